"""Slider demos of the notebooks, one module per notebook: compute (cached, testable) + draw, built on widgets."""
