"""Evaluation: settings shared by every evaluation (:mod:`.settings`), the models evaluated (:mod:`.members`),
predictions at several ensemble sizes in one pass (:mod:`.ensembles`), metric rows (:mod:`.scoring`), and the
loops over corruption cells (:mod:`.corruption_cells`) and consistency measurements (:mod:`.consistency_rows`).
"""
