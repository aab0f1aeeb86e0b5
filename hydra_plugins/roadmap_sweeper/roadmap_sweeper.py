"""The sweeper of conf/search/ (`hydra.sweeper._target_`): Hydra takes sweepers only from the hydra_plugins package
and imports every module of it at start-up, so this one imports Optuna only when a search runs."""

from hydra.plugins.sweeper import Sweeper


class RoadmapSweeper(Sweeper):
    """roadmap.records.search.SearchSweeper: Optuna's sweeper scoring each trial over its seeds' runs."""

    def __init__(self, **settings) -> None:
        from roadmap.records.search import SearchSweeper

        self.sweeper = SearchSweeper(**settings)

    def setup(self, **kwargs) -> None:
        self.sweeper.setup(**kwargs)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
