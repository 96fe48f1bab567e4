#!/usr/bin/python3
"""Reference for the stream benchmark: librdkafka (python3-confluent-kafka) producing and consuming
8 KiB records through the same broker as the Go benchmark, with the same settings (acks=all, keyed by
camera over 4 partitions, batches of 64 / 50 ms, a 1024-record buffer; consumer batches of 32 with a
synchronous commit each). Rounds alternate: each Go benchmark once, then librdkafka once, each on a
fresh `reid broker` in its own process. librdkafka's defaults keep up to a million produce requests
in flight and may reorder a partition's records when one is retried; the Go producer keeps a
camera's order under retries. So librdkafka also produces once per round with enable.idempotence
(the broker then keeps the order, with up to five requests in flight), the reference with the same
guarantee. Then prints the medians side by side, with ratios.

usage: bench_stream.py --reid bin/reid --go-test STREAM_TEST_BINARY [--n 20000] [--runs 5]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

IMAGE_BYTES = 8 << 10
METADATA = (b'RCRD\x01' + b'{"id":"cam-1_20261127T170000040000_1_0","camera":"cam-1",'
            b'"time":"2026-11-27T17:00:00.04Z","frame":1,"box":{"x":10,"y":20,"w":48,"h":120},'
            b'"score":0.87,"track":1,"detector":"yolo-fastest"}')


def make_topic(brokers):
    topic = "bench-py-" + uuid.uuid4().hex[:12]
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
        future.result(30)
    return topic


def produce(brokers, topic, n, idempotent=False):
    # The same bytes per record as the Go side: wire header + metadata + 8 KiB image + CRC.
    value = METADATA + os.urandom(IMAGE_BYTES) + b"\0\0\0\0"
    producer = Producer({
        "bootstrap.servers": brokers,
        "acks": "all",
        "linger.ms": 50,
        "batch.num.messages": 64,
        "queue.buffering.max.messages": 1024,
        "partitioner": "murmur2_random",
        "enable.idempotence": idempotent,
    })
    cameras = [b"cam-1", b"cam-2", b"cam-3", b"cam-4"]
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, value, key=cameras[i % 4])
                break
            except BufferError:  # the bounded buffer is full: wait, as the Go Put blocks
                producer.poll(0.001)
        producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining:
        sys.exit(f"librdkafka: {remaining} records not delivered")
    return n / elapsed


def consume(brokers, topic, n):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "bench-py-" + uuid.uuid4().hex[:12],
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen, first, last = 0, None, None
    deadline = time.time() + 300
    while seen < n and time.time() < deadline:
        batch = consumer.consume(num_messages=32, timeout=1.0)
        batch = [m for m in batch if m.error() is None]
        if not batch:
            continue
        if first is None:
            first, first_count = time.perf_counter(), len(batch)
        seen += len(batch)
        consumer.commit(asynchronous=False)
        last = time.perf_counter()
    consumer.close()
    if seen < n:
        sys.exit(f"librdkafka: consumed {seen} of {n}")
    # As in the Go benchmark, the clock starts at the first batch (group join excluded).
    return (n - first_count) / (last - first)


# The Go benchmarks (Benchmark<name>8KiB in stream/bench_test.go); ProduceOneLane is the producer
# with one write in flight, as before it had lanes, against the same librdkafka figure.
GO_BENCHMARKS = ("Produce", "ProduceOneLane", "Consume")


def go_rates(output):
    rates = {}
    pattern = re.compile(r"^Benchmark(\w+?)8KiB\S*\s.*?([\d.]+) msgs/s")
    for line in output.splitlines():
        match = pattern.search(line)
        if match:
            rates[match.group(1)] = float(match.group(2))
    return rates


class FreshBroker:
    """`reid broker` on a free loopback port with its own data directory, for one measurement.

    The embedded broker slows down as it accumulates records (2x over 100k of these), so every
    measurement, Go's and librdkafka's alike, starts on an empty one."""

    def __init__(self, reid):
        self.dir = tempfile.mkdtemp(prefix="bench-stream-")
        self.process = subprocess.Popen(
            [reid, "broker", "--addr", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"),
             "--log-level", "warn"], stdout=subprocess.PIPE, text=True,
            # Without fsync, as the in-process benchmark's broker: what is measured is the clients.
            env={**os.environ, "REID_STREAM_EMBEDDED_SYNC_WRITES": "false"})
        self.addr = self.process.stdout.readline().strip()
        if not self.addr:
            self.close()
            sys.exit("reid broker did not start")

    def close(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reid", required=True, help="the reid binary, for `reid broker`")
    parser.add_argument("--go-test", required=True, help="the compiled stream package tests")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    # Rounds alternate Go and librdkafka so that the machine's drift hits both sides alike.
    go, produced, produced_ordered, consumed = {}, [], [], []
    for round_number in range(args.runs):
        rates = {}
        for name in GO_BENCHMARKS:
            broker = FreshBroker(args.reid)
            try:
                run = subprocess.run(
                    [args.go_test, "-test.run", "^$", "-test.bench", f"^Benchmark{name}8KiB$",
                     "-test.benchtime", f"{args.n}x"],
                    capture_output=True, text=True, env={**os.environ, "REID_KAFKA_BROKERS": broker.addr})
            finally:
                broker.close()
            if run.returncode != 0:
                sys.exit(f"go benchmark {name} failed:\n{run.stdout}{run.stderr}")
            rates.update(go_rates(run.stdout))
        for name, rate in rates.items():
            go.setdefault(name, []).append(rate)
        broker = FreshBroker(args.reid)
        try:
            topic = make_topic(broker.addr)
            produced.append(produce(broker.addr, topic, args.n))
            consumed.append(consume(broker.addr, topic, args.n))
        finally:
            broker.close()
        broker = FreshBroker(args.reid)
        try:
            produced_ordered.append(produce(broker.addr, make_topic(broker.addr), args.n, idempotent=True))
        finally:
            broker.close()
        print(f"round {round_number + 1}: go " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + f"; librdkafka Produce {produced[-1]:.0f}, idempotent {produced_ordered[-1]:.0f}, "
              + f"Consume {consumed[-1]:.0f} msgs/s", flush=True)
    reference = {"Produce": statistics.median(produced), "Consume": statistics.median(consumed)}
    ordered = statistics.median(produced_ordered)
    go = {name: statistics.median(values) for name, values in go.items()}

    mb = IMAGE_BYTES / 1e6
    print(f"stream: {args.n} records of 8 KiB, median of {args.runs} rounds, a fresh `reid broker` each")
    print(f"{'':16} {'Go msgs/s':>10} {'Go MB/s':>8} {'librdkafka msgs/s':>18} {'MB/s':>6} {'Go/ref':>7}")
    for name in GO_BENCHMARKS:
        ours = go.get(name, float("nan"))
        ref = reference["Consume" if name == "Consume" else "Produce"]
        print(f"{name:16} {ours:10.0f} {ours * mb:8.1f} {ref:18.0f} {ref * mb:6.1f} {ours / ref:7.2f}")
        if name != "Consume":
            print(f"{'  idempotent':16} {'':10} {'':8} {ordered:18.0f} {ordered * mb:6.1f} {ours / ordered:7.2f}")


if __name__ == "__main__":
    main()
