"""Local fakes of third-party services (real servers on loopback, not mocks of our code)."""
