"""Sub-commands of the ``cloud-hf`` command line (see ``cloud_hf.cli``)."""
