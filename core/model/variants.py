"""The named network variants: the students (`STUDENTS`) and the infinite-memory teacher (`TEACHER`)."""

from __future__ import annotations

from core.model.network import NetworkConfig

STUDENTS = {
    "mnv2aspp": NetworkConfig(backbone="mobilenetv2", aspp=True),
    "mnv2": NetworkConfig(backbone="mobilenetv2", aspp=False),
    "resnet18": NetworkConfig(backbone="resnet18", aspp=False),
    # the fast student: no second trunk for values, separable decoder (about half the FLOPs per frame)
    "mnv2aspp-fast": NetworkConfig(value_encoder="light", decoder_blocks="separable"),
    "mnv2aspp-light-value": NetworkConfig(value_encoder="light"),
}
# the teacher: the same ImageNet-initialised key encoder, a full value trunk, twice the value and decoder widths
TEACHER = NetworkConfig(backbone="mobilenetv2", aspp=True, value_dim=256, decoder=(256, 128, 64))
