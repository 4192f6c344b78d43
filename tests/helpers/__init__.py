"""What the tests share: real services to run, signed deliveries, configurations. Not tests themselves."""
