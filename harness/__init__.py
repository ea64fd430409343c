"""What drives the stack from outside: the engine, images, containers, Compose
projects, local stacks, /proc, load, and the checks several test layers share.
Tests, the benchmark, the reliability runner and xray import it; none of it
needs pytest."""
