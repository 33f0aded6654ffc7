"""xtm-composer: the integration manager of OpenCTI and OpenAEV connectors."""

__version__ = "0.1.0"
