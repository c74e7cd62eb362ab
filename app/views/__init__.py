"""Qt views: main window and one module per panel."""
