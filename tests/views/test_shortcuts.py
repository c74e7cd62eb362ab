"""Quit has keys on every platform (Ctrl+Q where the platform's standard Quit is empty) and the
Keyboard shortcuts dialog, built from the real actions, lists them."""

from __future__ import annotations


def test_quit_has_a_shortcut_that_the_shortcuts_dialog_lists_and_it_closes_the_window(main_window, qtbot):
    from PySide6.QtGui import QAction, QKeySequence

    platform = QKeySequence.keyBindings(QKeySequence.Quit)
    quit_action = next(a for a in main_window.findChildren(QAction) if a.text() == "&Quit")
    expected = platform[0] if platform else QKeySequence("Ctrl+Q")
    assert quit_action.shortcut() == expected and not quit_action.shortcut().isEmpty()
    keys = quit_action.shortcut().toString(QKeySequence.NativeText)

    dlg = main_window.show_shortcuts()
    assert ("File", keys, "Quit") in dlg.rows
    row = [r for r in range(dlg.table.rowCount()) if dlg.table.item(r, 2).text() == "Quit"]
    assert len(row) == 1 and dlg.table.item(row[0], 1).text() == keys
    dlg.close()

    main_window.activateWindow()
    qtbot.waitUntil(main_window.isActiveWindow, timeout=5000)
    combo = quit_action.shortcut()[0]  # pressed: Qt's shortcut map triggers the action, which closes
    qtbot.keyClick(main_window, combo.key(), combo.keyboardModifiers())
    qtbot.waitUntil(lambda: not main_window.isVisible(), timeout=5000)
