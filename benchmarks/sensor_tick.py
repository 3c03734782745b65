"""Sensor tick time over a large bucket: the listing and fingerprinting one tick does.

    python benchmarks/sensor_tick.py [--objects 100000] [--classes 131]

Starts a local S3 server (SeaweedFS), writes N small objects across the classes, then times one
tick of new_uploads_sensor (a) with no change since the cursor, (b) with one changed class and
(c) with no cursor but every class's manifest written (`dagster dev` started after `fruit-assets
materialize`: the tick compares each listing with the manifest and requests nothing), against a
real Dagster instance. Baseline in the same run: one bare paginated listing of the prefix
(the floor any design that looks at every object pays), printed as a ratio.
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=131)
    args = parser.parse_args(argv)

    from fruit_assets_tests.harness.s3server import SeaweedFS

    work = tempfile.mkdtemp(prefix="bench-sensor-")
    with SeaweedFS(work) as server:
        os.environ.update(server.env)
        from dagster import DagsterInstance, build_sensor_context

        from fruit_assets.resources import FruitStorage
        from fruit_assets.sensors import new_uploads_sensor

        client = server.client()
        client.create_bucket(Bucket="bench")
        keys = [f"fruits/Training/Class {i % args.classes:03d}/{i}_100.jpg" for i in range(args.objects)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(lambda k: client.put_object(Bucket="bench", Key=k, Body=b"x" * 64), keys))
        print(f"wrote {args.objects} objects in {args.classes} classes in {time.perf_counter() - started:.0f} s")

        started = time.perf_counter()
        listed = sum(page.get("KeyCount", 0) for page in client.get_paginator("list_objects_v2").paginate(
            Bucket="bench", Prefix="fruits/Training/"))
        bare = time.perf_counter() - started
        print(f"baseline: bare paginated listing of {listed} keys     {bare:6.2f} s")

        home = os.path.join(work, "dagster_home")
        os.makedirs(home)
        resources = {"storage": FruitStorage(data_uri="s3://bench/fruits")}
        with DagsterInstance.local_temp(home) as instance:
            def tick(cursor):
                context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
                started = time.perf_counter()
                result = new_uploads_sensor(context)
                seconds = time.perf_counter() - started
                for request in result.dynamic_partitions_requests or []:
                    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                return result, seconds

            first, first_s = tick(None)
            print(f"first tick (registers {args.classes} classes)           {first_s:6.2f} s, "
                  f"{len(first.run_requests)} run request(s), cursor {len(first.cursor)} bytes")
            import tracemalloc

            quiet, quiet_s = tick(first.cursor)
            print(f"tick, no change                                {quiet_s:6.2f} s  (x{quiet_s / bare:.2f} of bare listing), "
                  f"{len(quiet.run_requests or [])} run requests")
            tracemalloc.start()  # a tick of its own: tracing slows Python several times over
            tick(first.cursor)
            tick_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            # Memory: the tick streams each class's listing through its digest. Baseline in the same
            # run: the whole listing held as a list, what a tick that kept its objects would hold.
            from fruit_assets.storage import open_store

            tracemalloc.start()
            held = list(open_store("s3://bench/fruits").list_objects("s3://bench/fruits/Training", content_hash=False))
            held_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            del held
            print(f"memory, tick (Python heap peak)                {tick_peak / 1e6:6.1f} MB  (x{tick_peak / held_peak:.2f} of "
                  f"the listing held whole: {held_peak / 1e6:.1f} MB, {held_peak / args.objects:.0f} B/object)")
            # What a tick holds is the pages in flight: one per listing thread (16), each up to
            # 1,000 keys, whatever the bucket's size; a held listing grows with every key.
            in_flight = min(args.classes, 16) * min(args.objects / args.classes, 1000)
            per_key = tick_peak / in_flight
            print(f"  {per_key / 1e3:.1f} kB per key in flight ({in_flight:.0f} keys: {min(args.classes, 16)} listings, "
                  f"one page each); at 1,000,000 keys the tick stays <= ~{per_key * 16 * 1000 / 1e6:.0f} MB, "
                  f"a held listing ~{held_peak / args.objects * 1e6 / 1e6:.0f} MB")
            client.put_object(Bucket="bench", Key="fruits/Training/Class 007/new_100.jpg", Body=b"y" * 64)
            changed, changed_s = tick(quiet.cursor)
            print(f"tick, one class changed                        {changed_s:6.2f} s  (x{changed_s / bare:.2f} of bare listing), "
                  f"{len(changed.run_requests)} run request(s) for "
                  f"{changed.run_requests[0].tags['dagster/asset_partition_range_start']}")

            from fruit_assets.layout import DataLayout
            from fruit_assets.steps.manifest import build_manifests

            classes = instance.get_dynamic_partitions("fruit_class")
            build_manifests(DataLayout.at("s3://bench/fruits"), classes)  # what raw_images writes
            after_cli, after_cli_s = tick(None)
            print(f"first tick after a materialization (no cursor) {after_cli_s:6.2f} s  (x{after_cli_s / bare:.2f} of bare listing), "
                  f"{len(after_cli.run_requests or [])} run requests")
            print("Dagster's default sensor timeout is 60 s (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS).")


if __name__ == "__main__":
    main()
