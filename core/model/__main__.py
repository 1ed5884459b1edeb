"""`python -m core.model` — parameter counts of each network variant, by part."""

from __future__ import annotations


from core.io.command import ToolParser, run_tool, tool_description
from core.model.network import build_network, parameter_count
from core.model.variants import STUDENTS, TEACHER


def main(argv: list[str] | None = None) -> None:
    """Print one row per variant: its parameters in each part and in all."""
    ToolParser(prog="python -m core.model", description=tool_description(__doc__)).parse_args(argv)
    parts = ("backbone", "aspp", "key_proj", "value_encoder", "decoder")
    print(f"{'variant':<20} " + " ".join(f"{p:>13}" for p in parts) + f" {'total':>10}")
    for name, config in {**STUDENTS, "teacher": TEACHER}.items():
        net = build_network(config)
        counts = [parameter_count(getattr(net, p)) if getattr(net, p) is not None else 0 for p in parts]
        print(f"{name:<20} " + " ".join(f"{c:>13,}" for c in counts) + f" {parameter_count(net):>10,}")


if __name__ == "__main__":
    run_tool(main)
