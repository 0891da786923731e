"""Include each page script once.

sphinx-thebe 0.3.1 registers an inline script (``const THEBE_JS_URL = …``) after the HTML
builder has started; Sphinx 7.4 then keeps it twice (once with filename None, once with
''), and every page fails with "Identifier 'THEBE_JS_URL' has already been declared".
The page check (`nblib.pagecheck`) found it. Here each page drops the second copy of any
script with the same source, body and attributes.
"""


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
