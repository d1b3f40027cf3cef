"""How the kit's widgets look, readable by everyone (WCAG 2.1 AA) in any JupyterLab theme.

Plain values, no imports: the console and Check my work (front/widgets.py) and the instructor's room
view (workshop/status.py) share them.
"""

# Button colours with white text at >= 4.5:1 (WCAG 1.4.3). ipywidgets' button_style alone takes the
# theme's colours, which fail it in JupyterLab's light theme: warning #f57c00 2.7:1, info #0097a7 3.5:1,
# success #388e3c 4.1:1. Set as the button's own style, these win over the theme's class.
WHITE_TEXT_ON = {"warning": "#b45309", "info": "#007c89", "success": "#2e7d32", "danger": "#c62828"}

# Marks a widget as the kit's, so that FOCUS_RING reaches its controls and nothing else on the page.
KIT_CLASS = "mlab-widget"

# A focus ring of 6.3:1 on white and 5.4:1 on a grey button (WCAG 1.4.11 asks 3:1) instead of ipywidgets'
# 1 px #64b5f6 (2.2:1); the text field's own focus is a border colour only. ipywidgets' HTML keeps <style>.
FOCUS_RING = (
    f"<style>.{KIT_CLASS} .jupyter-button:focus-visible, .{KIT_CLASS} input:focus-visible "
    "{outline: 2px solid #1a5fb4 !important; outline-offset: 1px}</style>"
)
