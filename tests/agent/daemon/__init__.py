"""Tests of agent/daemon: notify, watchdog supervisor, signals, state-dir lock."""
