"""What a trained GPRec has learned about groups, computed from a run directory.

- `runs`: a finished GPRec run loaded back (`gprec.training.load.load_run`) with its training
  data re-read through the run's own config (`gprec.data.dataset.load_dataset`, the cache) and
  its distinct training users, and the same model untrained, as a reference.
- `similarity`: cosine similarities among the group embeddings `p_i`, `n_i` (the paper's
  Figure 4) and their summary numbers.
- `report`: per learned group, its users, the user attributes and items over-represented in it
  (lift), multi-membership, empty and all-holding groups.
- `recovery`: how well learned groups recover planted ones (AMI, best-match Jaccard).

The CLI (`gprec groups similarity|report`) only parses arguments and calls these.
"""
