"""Every benchmark in turn, with its default settings: `python -m benchmarks` (or `make bench`).
Each prints its tables; benchmarks/RESULTS.md records them with the commands and dates."""
import sys

from benchmarks import jacobian, mlp, scalar, traced

for module in (scalar, mlp, jacobian, traced):
    print(f"\n## python -m {module.__name__}\n", flush=True)
    sys.argv = [module.__name__]
    module.main()
