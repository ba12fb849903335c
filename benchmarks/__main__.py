"""Every benchmark in turn, with its default settings: `python -m benchmarks` (or `make bench`).
Each prints its tables; benchmarks/RESULTS.md records them with the commands and dates. The
second semester's recipes against their PyTorch twins come last (about 15 minutes)."""
import sys

from benchmarks import (jacobian, matrix_threads, mlp, scalar, second_order, second_semester, second_semester_speed,
                        step_memory, sweep, tensor, tensor_trace, traced)

for module in (scalar, tensor, mlp, step_memory, matrix_threads, jacobian, second_order, traced, tensor_trace, sweep,
               second_semester_speed,
               second_semester):
    print(f"\n## python -m {module.__name__}\n", flush=True)
    sys.argv = [module.__name__]
    module.main()
