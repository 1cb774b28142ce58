"""Built-in defense plugins: none yet. The ``rbench_defenses`` hook is part of the plugin contract, and
defenses arrive with the paper suites that need them (low-pass filters, denoising autoencoders, committees)."""
