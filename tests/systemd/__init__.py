"""Tests of systemd/: the unit (verify, security score), sysusers and udev rules."""
