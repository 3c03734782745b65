"""What 100,000 images cost to embed, from a measured rate in images per vCPU-second.

    .venv/bin/python benchmarks/cost.py --fp32 2.9 --reduced 4.1
    .venv/bin/python benchmarks/cost.py --fp32 2.9 --reduced 4.1 --reduced-label bf16

The rates are what the embedding asset's metadata reports as ``images_per_cpu_second`` (images
featurized / executor CPU-seconds, Python workers + JVM; `fruit-assets materialize` prints it in
its summary), one run at fp32 and one at a reduced precision. The script assumes the executors'
vCPUs run at that rate, all of them busy all the time: an 8-vCPU node embeds 8 x rate images a
second, and a node-hour costs its on-demand price. Not counted: the driver, Spark's start-up,
executors idle while a run starts or ends, storage and transfer. A CPU-second measured on one
processor is not one on another: the m5 (Intel Skylake / Cascade Lake), c6i (Ice Lake) and c7i
(Sapphire Rapids) differ from the machine the rate was measured on, and a reduced precision most
of all (bf16 has hardware support on c7i's AMX only); measure on the instance type before relying
on a figure.

Prices: the published Amazon EC2 on-demand list prices, Linux, region us-east-1 (N. Virginia), as
last known when this was written, per instance-hour: m5.2xlarge $0.384, c6i.2xlarge $0.34,
c7i.2xlarge $0.357 (8 vCPUs each). Prices change: check them against
https://aws.amazon.com/ec2/pricing/on-demand/ before quoting any figure this prints.

The public reference, for comparison: 67,692 images embedded in 83 minutes on 3 x m5.2xlarge
(24 vCPUs), 13.6 images/s, i.e. at most 0.57 images per vCPU-second (if every vCPU was busy).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

IMAGES = 100_000
REGION = "us-east-1"


@dataclass(frozen=True)
class Instance:
    name: str
    vcpus: int
    dollars_per_hour: float  # on-demand, Linux, us-east-1: published list price as last known
    native_bf16: bool  # AMX or AVX-512 BF16: fruit_assets refuses bf16 elsewhere (featurize/openvino_model.py)


INSTANCES = (
    Instance("m5.2xlarge", 8, 0.384, native_bf16=False),  # Skylake / Cascade Lake
    Instance("c6i.2xlarge", 8, 0.34, native_bf16=False),  # Ice Lake
    Instance("c7i.2xlarge", 8, 0.357, native_bf16=True),  # Sapphire Rapids, AMX
)

# The public reference run: images, minutes, nodes of m5.2xlarge.
REFERENCE_IMAGES, REFERENCE_MINUTES, REFERENCE_NODES = 67_692, 83, 3
REFERENCE_INSTANCE = INSTANCES[0]


def reference_images_per_second() -> float:
    """13.6: the reference's images over its wall time."""
    return REFERENCE_IMAGES / (REFERENCE_MINUTES * 60)


def reference_cost(images: int = IMAGES) -> float:
    """Dollars for ``images`` at the reference's rate on its 3 x m5.2xlarge."""
    hours = images / reference_images_per_second() / 3600
    return hours * REFERENCE_NODES * REFERENCE_INSTANCE.dollars_per_hour


def cost(images_per_vcpu_second: float, instance: Instance, images: int = IMAGES) -> float:
    """Dollars for ``images`` on ``instance`` nodes whose every vCPU embeds at the given rate."""
    node_images_per_hour = images_per_vcpu_second * instance.vcpus * 3600
    return images / node_images_per_hour * instance.dollars_per_hour


def cost_table(rates: dict[str, float], images: int = IMAGES) -> str:
    """A markdown table: per precision and instance, images per node-hour and dollars per
    ``images``; then the public reference."""
    lines = [
        f"| precision | instance ({REGION}, on-demand) | $/hour | images per vCPU-second | images per node-hour "
        f"| $ per {images:,} images |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, rate in rates.items():
        if rate <= 0:
            raise ValueError(f"{label}: images per vCPU-second must be > 0, not {rate}")
        for instance in INSTANCES:
            if label != "fp32" and not instance.native_bf16:
                lines.append(f"| {label} | {instance.name} | {instance.dollars_per_hour:.3f} | - | - "
                             f"| refused: no native {label} on this CPU |")
                continue
            lines.append(f"| {label} (measured) | {instance.name} | {instance.dollars_per_hour:.3f} | {rate:.2f} "
                         f"| {rate * instance.vcpus * 3600:,.0f} | {cost(rate, instance, images):.4f} |")
    per_second = reference_images_per_second()
    nodes = REFERENCE_NODES
    lines.append(
        f"| public reference: {REFERENCE_IMAGES:,} images in {REFERENCE_MINUTES} min, {per_second:.1f} images/s "
        f"| {nodes} x {REFERENCE_INSTANCE.name} | {nodes * REFERENCE_INSTANCE.dollars_per_hour:.3f} "
        f"| {per_second / (nodes * REFERENCE_INSTANCE.vcpus):.2f} (at most) "
        f"| {per_second * 3600 / nodes:,.0f} per node | {reference_cost(images):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=float, required=True, help="measured images per CPU-second at fp32")
    parser.add_argument("--reduced", type=float, help="measured images per CPU-second at the reduced precision")
    parser.add_argument("--reduced-label", default="bf16", help="the reduced precision's name (default bf16)")
    parser.add_argument("--images", type=int, default=IMAGES, help=f"images to price (default {IMAGES:,})")
    args = parser.parse_args(argv)
    rates = {"fp32": args.fp32}
    if args.reduced is not None:
        rates[args.reduced_label] = args.reduced
    print(cost_table(rates, args.images))
    print(f"\nList prices as last known, {REGION}, Linux on-demand: check https://aws.amazon.com/ec2/pricing/on-demand/ "
          "before quoting. Assumes every executor vCPU embeds at the measured rate; driver and start-up not counted.")


if __name__ == "__main__":
    main()
