"""course_lib: complete, tested implementations behind the diffusion and visual-tokenizer course.

Modules (import what you need; importing the package itself stays cheap):
schedules, diffusion, data, nets, attention, train, checkpoints, metrics, viz, widgets, coursework, device.
"""
__version__ = "0.1.0"
