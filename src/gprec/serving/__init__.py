"""A finished run in use, from its run directory alone: new raw rows encoded as training encoded
its own (`encode`), scored in streamed batches (`predict`), top-k items per user (`recommend`),
and what the run keeps for this (`catalogue`: `catalogue.npz`, written by `gprec train`)."""
