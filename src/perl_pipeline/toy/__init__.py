"""The offline world (no Kedro): the synthetic toy world, the benchmark miniatures drawn from it and
the contrastive pretraining of the toy CLIP."""
