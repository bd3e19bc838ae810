"""Image mode (MATH.md §3, "Published image pipeline").

* :mod:`.dit` — the class-conditional DiT one-step generator on latents.
"""
