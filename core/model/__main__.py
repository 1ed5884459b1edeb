"""`python -m core.model` — parameter counts of each network variant, by part."""

from __future__ import annotations

from core.model.network import build_network, parameter_count
from core.model.variants import STUDENTS, TEACHER


def main() -> None:
    parts = ("backbone", "aspp", "key_proj", "value_encoder", "decoder")
    print(f"{'variant':<20} " + " ".join(f"{p:>13}" for p in parts) + f" {'total':>10}")
    for name, config in {**STUDENTS, "teacher": TEACHER}.items():
        net = build_network(config)
        counts = [parameter_count(getattr(net, p)) if getattr(net, p) is not None else 0 for p in parts]
        print(f"{name:<20} " + " ".join(f"{c:>13,}" for c in counts) + f" {parameter_count(net):>10,}")


if __name__ == "__main__":
    main()
