"""Other formats → ours, offline: the official annotation releases (:mod:`.releases`),
OpenTAD's annotation files (:mod:`.opentad`) and ActionFormer's configs
(:mod:`.actionformer_config`); ``asl-convert`` runs them."""
