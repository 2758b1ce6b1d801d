"""The simulator: the whole platform loop with simulated volunteers, measured against Galaxy Zoo 2's
fixed 40 votes and against random priorities in the same run (``manage.py simulate``,
``benchmarks/learning_simulate.py``). See :mod:`.runner` for the arms and the metrics,
:mod:`.population` for the volunteers, :mod:`.sources` for the galaxies, :mod:`.report` for the output."""
from .population import KINDS, PopulationConfig, Session, VolunteerPopulation, VotePool
from .runner import ARMS, SimulationConfig, simulation_cleanup, simulation_run, tasks_inline
from .sources import SOURCES, GalaxySet, galaxies_load, single_question_tree

__all__ = [
    "ARMS",
    "KINDS",
    "SOURCES",
    "GalaxySet",
    "PopulationConfig",
    "Session",
    "SimulationConfig",
    "VolunteerPopulation",
    "VotePool",
    "galaxies_load",
    "simulation_cleanup",
    "simulation_run",
    "single_question_tree",
    "tasks_inline",
]
