"""The napari glue: dock widget panels, reader, writer and sample data.

Everything here is thin: clicks become calls into :mod:`napari_genselfdiff.core`, results become
layers. Long jobs run in napari thread workers (see :mod:`._threading`; ``GENSELFDIFF_NOTHREADS=1``
runs them synchronously); training runs in a child process that such a worker waits on
(:mod:`._subprocess`), and messages go through napari notifications (:mod:`._notify`).
"""
