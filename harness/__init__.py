"""What drives the stack from outside: the engine, images, containers, local
stacks, /proc, load. Tests, the benchmark, the reliability runner and xray import it."""
