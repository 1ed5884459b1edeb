"""The MobileVOS student and teacher networks: backbones, memory read, decoder, and `build_network`."""

from core.model.network import NetworkConfig, VOSNetwork, build_network

__all__ = ["NetworkConfig", "VOSNetwork", "build_network"]
