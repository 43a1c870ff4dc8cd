"""flowpace: a formally specified write flow controller.

Debt-based foreground backpressure and flush pacing, with the behaviour of the mace-kv 0.0.28
flow controller. The pure model it is checked against is `flowpace_reference`.
"""

__version__ = "0.1.0"
