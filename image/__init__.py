"""The box's OS image: its build (build.py) and booting it under qemu (qemu.py); never on a box."""
