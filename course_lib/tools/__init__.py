"""The course's tooling, apart from what learners read: the benchmark (``bench``, with the slider demos' latency,
``latency``), the README's figures (``figures``) and the sweeps behind the notebooks' result tables
(``experiments``). Run them through the entry point: ``./course bench``, ``./course figures``,
``./course experiments NAME``; the repository's paths (README, img/, notebooks/) come in from there."""
