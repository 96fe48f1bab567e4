#!/usr/bin/python3
"""Reference for the stream benchmark: librdkafka (python3-confluent-kafka) producing and consuming
8 KiB records through the same broker as the Go benchmark, with the same settings (acks=all, keyed by
camera over 4 partitions, batches of 64 / 50 ms, a 1024-record buffer; consumer batches of 32 with a
synchronous commit each). Then prints the Go medians beside librdkafka's, with ratios.

usage: bench_stream.py --brokers HOST:PORT --go-results FILE [--n 20000] [--runs 5]
"""
import argparse
import os
import re
import statistics
import sys
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


def produce(brokers, topic, n):
    # The same bytes per record as the Go side: wire header + metadata + 8 KiB image + CRC.
    value = METADATA + os.urandom(IMAGE_BYTES) + b"\0\0\0\0"
    producer = Producer({
        "bootstrap.servers": brokers,
        "acks": "all",
        "linger.ms": 50,
        "batch.num.messages": 64,
        "queue.buffering.max.messages": 1024,
        "partitioner": "murmur2_random",
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


def go_medians(path):
    rates = {}
    pattern = re.compile(r"^Benchmark(\w+?)8KiB\S*\s.*?([\d.]+) msgs/s")
    with open(path) as results:
        for line in results:
            match = pattern.search(line)
            if match:
                rates.setdefault(match.group(1), []).append(float(match.group(2)))
    return {name: statistics.median(values) for name, values in rates.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--go-results", required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    produced, consumed = [], []
    for _ in range(args.runs):
        topic = make_topic(args.brokers)
        produced.append(produce(args.brokers, topic, args.n))
        consumed.append(consume(args.brokers, topic, args.n))
    reference = {"Produce": statistics.median(produced), "Consume": statistics.median(consumed)}
    go = go_medians(args.go_results)

    mb = IMAGE_BYTES / 1e6
    print(f"stream: {args.n} records of 8 KiB, median of {args.runs}, broker {args.brokers}")
    print(f"{'':8} {'Go msgs/s':>10} {'Go MB/s':>8} {'librdkafka msgs/s':>18} {'MB/s':>6} {'Go/ref':>7}")
    for name in ("Produce", "Consume"):
        ours = go.get(name, float("nan"))
        ref = reference[name]
        print(f"{name:8} {ours:10.0f} {ours * mb:8.1f} {ref:18.0f} {ref * mb:6.1f} {ours / ref:7.2f}")


if __name__ == "__main__":
    main()
