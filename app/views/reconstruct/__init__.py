"""The Reconstruction panel's tabs: MRI comparison (``mri_tab``, its form ``mri_form``), sweep, CT."""
