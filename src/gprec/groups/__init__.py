"""Group recommenders trained on real groups: a per-user model (DMTL, the MLP, any registered
CTR model) learns from the members' own histories and from the groups' histories, and a
group is scored either from its profile built from its members (the mean of their user-side
representations, DMTL) or by aggregating its members' scores (average, least misery, most
pleasure, Borda count). `gprec groups train` and `gprec groups recommend` are its commands.
"""
