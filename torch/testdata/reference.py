#!/usr/bin/python3
"""PyTorch reference side of package torch's tests and benchmarks (Debian python3-torch).

Subcommands:
  resnet   make a seeded random ResNet-50 (torchvision), save its state dict, and write the
           features of a raw uint8 NHWC RGB batch, computed in eval mode
  bench    time eval-mode forwards on one fixed batch (OSNet or ResNet-50), print a JSON line
  train    make a seeded ResNet-50 re-id model, save its state dict, and run Cluster Contrast
           steps in fp32 with torch.optim.Adam and the sequential memory update; write the
           losses, the memory and the trained model's eval features of a probe batch
  train-bench  time ResNet-50 training steps (eager / torch.compile, bf16, channels_last) on CUDA

The OSNet below is this project's own definition of the torchreid layout (same module names), used
only to time the same network in PyTorch.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def preprocess(raw, n, h, w):
    x = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(n, h, w, 3).copy())
    x = x.permute(0, 3, 1, 2).float().div(255.0)
    return ((x - MEAN) / STD).contiguous()


class GeM(nn.Module):
    def __init__(self, p=3.0):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)

    def forward(self, x):
        return x.clamp(min=1e-6).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class ReidResNet(nn.Module):
    """torchvision ResNet-50 trunk + pooling + optional BN neck, names as package torch."""

    def __init__(self, last_stride, gem, neck):
        super().__init__()
        base = torchvision.models.resnet50()
        if last_stride == 1:
            base.layer4[0].conv2.stride = (1, 1)
            base.layer4[0].downsample[0].stride = (1, 1)
        for name in ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]:
            setattr(self, name, getattr(base, name))
        self.gap = GeM() if gem else None
        self.feat_bn = nn.BatchNorm1d(2048) if neck else None

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        v = self.gap(x) if self.gap is not None else x.mean((2, 3))
        return self.feat_bn(v) if self.feat_bn is not None else v


class ConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride=1, pad=0, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LightConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv2(self.conv1(x))))


class Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 16, 1)
        self.fc2 = nn.Conv2d(c // 16, c, 1)

    def forward(self, x):
        g = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(g))))


class OSBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 4
        self.conv1 = ConvBN(cin, mid, 1)
        self.conv2a = LightConv(mid)
        self.conv2b = nn.Sequential(*[LightConv(mid) for _ in range(2)])
        self.conv2c = nn.Sequential(*[LightConv(mid) for _ in range(3)])
        self.conv2d = nn.Sequential(*[LightConv(mid) for _ in range(4)])
        self.gate = Gate(mid)
        self.conv3 = ConvBN(mid, cout, 1, relu=False)
        self.downsample = ConvBN(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x):
        x1 = self.conv1(x)
        x2 = (self.gate(self.conv2a(x1)) + self.gate(self.conv2b(x1)) + self.gate(self.conv2c(x1))
              + self.gate(self.conv2d(x1)))
        identity = self.downsample(x) if self.downsample is not None else x
        return F.relu(self.conv3(x2) + identity)


class OSNet(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvBN(3, channels[0], 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.conv2 = self.stage(channels[0], channels[1], True)
        self.conv3 = self.stage(channels[1], channels[2], True)
        self.conv4 = self.stage(channels[2], channels[3], False)
        self.conv5 = ConvBN(channels[3], channels[3], 1)
        self.fc = nn.Sequential(nn.Linear(channels[3], 512), nn.BatchNorm1d(512), nn.ReLU())

    @staticmethod
    def stage(cin, cout, reduce):
        layers = [OSBlock(cin, cout), OSBlock(cout, cout)]
        if reduce:
            layers.append(nn.Sequential(ConvBN(cout, cout, 1), nn.AvgPool2d(2, 2)))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.conv4(self.conv3(self.conv2(x))))
        return self.fc(x.mean((2, 3)))


def build(arch):
    if arch == "osnet_x0_25":
        return OSNet([16, 64, 96, 128])
    if arch == "osnet_x1_0":
        return OSNet([64, 256, 384, 512])
    if arch == "resnet50":
        return ReidResNet(last_stride=1, gem=False, neck=True)
    raise SystemExit("unknown arch " + arch)


def randomise_bn(model):
    """Non-trivial BN statistics, so the comparison exercises them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


def cmd_resnet(args):
    torch.manual_seed(args.seed)
    if args.head == "torchvision":
        # Exactly what a torchvision user saves: the ImageNet model's state dict (fc included).
        model = torchvision.models.resnet50()
        randomise_bn(model)
        model.eval()
        torch.save(model.state_dict(), args.out)
        model.fc = nn.Identity()
    else:
        # Our re-id head (last stride 1, GeM, BN neck), saved as a training checkpoint would be:
        # wrapped in {"state_dict": ...} with DataParallel's "module." prefixes.
        model = ReidResNet(last_stride=1, gem=True, neck=True)
        randomise_bn(model)
        with torch.no_grad():
            model.gap.p.fill_(2.5)
        model.eval()
        state = {"module." + k: v for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "epoch": 7}, args.out)
    raw = open(args.input, "rb").read()
    x = preprocess(raw, args.n, args.height, args.width)
    with torch.no_grad():
        features = model(x).float().numpy()
    features.astype(np.float32).tofile(args.features)


def cmd_dtypes(args):
    """A state dict exercising the tensor types and layouts ReadStateDict must convert."""
    from collections import OrderedDict
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4
    state = OrderedDict([
        ("half", base.half()),
        ("bfloat", base[0].bfloat16()),
        ("double", base.double() * 2),
        ("transposed", base.t()),  # a strided view of a 2x3 storage
        ("offset", base.reshape(-1)[2:5]),  # a view with a storage offset
        ("count", torch.tensor(7, dtype=torch.long)),
    ])
    torch.save(state, args.out, _use_new_zipfile_serialization=not args.legacy)


def cmd_bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.arch).eval()
    x = torch.randn(args.batch, 3, args.height, args.width)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            start = time.perf_counter()
            model(x)
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(json.dumps({"arch": args.arch, "batch": args.batch, "threads": torch.get_num_threads(),
                      "channels_last": args.channels_last, "median_s": median,
                      "images_per_s": args.batch / median, "torch": torch.__version__}))


def cmd_train(args):
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
    torch.manual_seed(args.seed)
    model = ReidResNet(last_stride=1, gem=False, neck=True)
    randomise_bn(model)
    torch.save(model.state_dict(), args.out)
    model.feat_bn.bias.requires_grad_(False)
    # channels_last as package torch: the same layout selects the same kernels, hence the same rounding.
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=5e-4)
    memory = torch.from_numpy(np.fromfile(args.memory, dtype=np.float32).reshape(args.clusters, 2048)).to(device)
    labels = [int(v) for v in args.labels.split(",")]
    target = torch.tensor(labels, device=device)
    start, count = (int(v) for v in args.rows.split(",")) if args.rows else (0, args.clusters)
    identities = None
    if args.identities:
        identities = torch.tensor([int(v) for v in args.identities.split(",")], device=device)
    n, size = len(labels), len(labels) * args.height * args.width * 3
    raw = open(args.input, "rb").read()
    losses = []
    for step in range(args.steps):
        x = preprocess(raw[step * size:(step + 1) * size], n, args.height, args.width).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        model.train()
        f = F.normalize(model(x), dim=1)
        logits = f.mm(memory.t()) / 0.05
        loss = F.cross_entropy(logits[:, start:start + count], target - start)
        if identities is not None:
            # Camera-aware proxies' inter-camera term, written out one sample at a time.
            inter = []
            for i, y in enumerate(labels):
                positive = identities == identities[y]
                negatives = logits[i][~positive]
                hardest = negatives.topk(min(args.hard, negatives.numel())).values
                candidates = torch.cat([logits[i][positive], hardest])
                inter.append(-(logits[i][positive] - torch.logsumexp(candidates, 0)).mean())
            loss = loss + args.inter_weight * torch.stack(inter).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        with torch.no_grad():
            # Cluster Contrast's rule, one sample at a time in batch order.
            for i, y in enumerate(labels if args.update else []):
                memory[y] = F.normalize(0.1 * memory[y] + 0.9 * f[i], dim=0)
    model.eval()
    probe = preprocess(raw[args.steps * size:(args.steps + 1) * size], n, args.height, args.width)
    with torch.no_grad():
        features = model(probe.to(device).contiguous(memory_format=torch.channels_last))
    features.float().cpu().numpy().astype(np.float32).tofile(args.result + ".features")
    memory.cpu().numpy().astype(np.float32).tofile(args.result + ".memory")
    with open(args.result + ".losses", "w") as out:
        json.dump({"torch": torch.__version__, "losses": losses}, out)


def cmd_resize(args):
    """PIL's bilinear resize (antialiased when it shrinks), as torchreid's transforms apply it."""
    from PIL import Image
    raw = np.fromfile(args.input, dtype=np.uint8).reshape(args.height, args.width, 3)
    out = Image.fromarray(raw).resize((args.out_width, args.out_height), Image.BILINEAR)
    np.asarray(out, dtype=np.uint8).tofile(args.out)


def cmd_train_bench(args):
    """ResNet-50 (last stride 1, BN neck) Cluster Contrast step on CUDA: bf16 autocast,
    channels_last, Adam, memory loss; eager and torch.compile."""
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    results = []
    variants = [(name, compiled) for name, compiled in [("eager bf16 channels_last", False),
                                                        ("torch.compile bf16 channels_last", True)]
                if name.split()[0] in args.variants.split(",")]
    for name, compiled in variants:
        torch.manual_seed(0)
        model = ReidResNet(last_stride=1, gem=False, neck=True).to(device)
        model.feat_bn.bias.requires_grad_(False)
        model = model.to(memory_format=torch.channels_last).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4)
        memory = F.normalize(torch.randn(args.clusters, 2048, device=device), dim=1)
        raw = torch.randint(0, 256, (args.batch, args.height, args.width, 3), dtype=torch.uint8)
        labels = torch.randint(0, args.clusters, (args.batch,), device=device)
        seen, rounds_host = {}, []
        for i, y in enumerate(labels.tolist()):
            r = seen.get(y, 0)
            seen[y] = r + 1
            if len(rounds_host) <= r:
                rounds_host.append(([], []))
            rounds_host[r][0].append(i)
            rounds_host[r][1].append(y)
        rounds = [(torch.tensor(s, device=device), torch.tensor(r, device=device)) for s, r in rounds_host]
        mean, std = MEAN.to(device), STD.to(device)
        forward = torch.compile(model) if compiled else model

        def step():
            x = raw.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div(255)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            # bf16 on CUDA only: package torch runs fp32 on the CPU (a rehearsal of the GPU check).
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                f = forward(x)
            logits = F.normalize(f.float(), dim=1).mm(memory.t()) / 0.05
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # The same memory update as package torch (per-sample rule, batched by occurrence).
            with torch.no_grad():
                inputs = F.normalize(f.float(), dim=1)
                for samples, rows in rounds:
                    mixed = memory[rows] * 0.1 + inputs[samples] * 0.9
                    memory[rows] = F.normalize(mixed, dim=1)
            return loss

        synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for _ in range(args.warmup):
            step()
        synchronize()
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            step()
            synchronize()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        results.append({"variant": name, "batch": args.batch, "median_s": median,
                        "images_per_s": args.batch / median})
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(json.dumps({"torch": torch.__version__, "device": name,
                      "results": results}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("resnet")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--head", choices=["torchvision", "reid"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--features", required=True)
    p = sub.add_parser("dtypes")
    p.add_argument("--out", required=True)
    p.add_argument("--legacy", action="store_true")
    p = sub.add_parser("bench")
    p.add_argument("--arch", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--channels-last", action="store_true")
    p = sub.add_parser("train")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--memory", required=True)
    p.add_argument("--clusters", type=int, required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--update", type=int, default=1, help="0: leave the memory as it is")
    p.add_argument("--rows", default="", help="START,COUNT: the softmax's memory rows")
    p.add_argument("--identities", default="", help="one identity per memory row: adds the inter-camera term")
    p.add_argument("--inter-weight", type=float, default=0.5)
    p.add_argument("--hard", type=int, default=50)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--result", required=True)
    p = sub.add_parser("resize")
    p.add_argument("--input", required=True)
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--out-width", type=int, required=True)
    p.add_argument("--out-height", type=int, required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("train-bench")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--variants", default="eager", help="comma-separated: eager, torch.compile")
    args = parser.parse_args()
    {"resnet": cmd_resnet, "dtypes": cmd_dtypes, "bench": cmd_bench, "train": cmd_train,
     "resize": cmd_resize, "train-bench": cmd_train_bench}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
