"""Real data: loaders for ProcessBench, GSM8K, MATH500, PRMBench, Math-Shepherd and PRM800K
records into selfprm's trajectories, answer checking with ``math-verify``, splits by problem and
an exporter to the stepwise-supervision layout. The data itself lives outside the project
(:func:`shared_data_dir`)."""
from selfprm.data.answers import answers_match, extract_boxed, extract_gsm8k_answer, normalize_number
from selfprm.data.export import export_stepwise, stepwise_record
from selfprm.data.formats import PRM800KConfig, load_math_shepherd, load_prm800k
from selfprm.data.gsm8k import (
    load_gsm8k,
    load_gsm8k_example_solutions,
    reference_trajectory,
    verify_reference,
)
from selfprm.data.math500 import check_math_solution, load_math500, math_reference_trajectory
from selfprm.data.paths import PROCESSBENCH_SPLITS, processbench_path, shared_data_dir, shared_path
from selfprm.data.prmbench import load_prmbench
from selfprm.data.processbench import load_processbench, load_processbench_all, load_processbench_file
from selfprm.data.records import problem_key
from selfprm.data.splits import exclude_problems, key_of, split_by_problem

__all__ = [
    "PROCESSBENCH_SPLITS", "PRM800KConfig", "answers_match", "check_math_solution", "exclude_problems",
    "export_stepwise", "extract_boxed", "extract_gsm8k_answer", "key_of", "load_gsm8k",
    "load_gsm8k_example_solutions", "load_math500", "load_math_shepherd", "load_prm800k", "load_prmbench",
    "load_processbench", "load_processbench_all", "load_processbench_file", "math_reference_trajectory",
    "normalize_number", "problem_key", "processbench_path", "reference_trajectory", "shared_data_dir",
    "shared_path", "split_by_problem", "stepwise_record", "verify_reference",
]
