"""reflectrm: self-reflective generative reward models (ReflectRM), trained, served and run at scale.

The library is importable and testable with no Ray and no GPU. `jobs/` and `serve/` are the Ray
adapters around it.
"""

__version__ = "0.1.0"
