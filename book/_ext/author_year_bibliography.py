"""The references page labelled as the text cites: "Goodfellow et al. 2015", not "[GPAM+14]".

sphinxcontrib-bibtex cites author–year in the text (``bibtex_reference_style``) but labels
the list with pybtex's alphabetic style. This registers a pybtex style, ``author_year``,
whose labels are the first author's surname ("et al." beyond two authors) and the year,
with a, b, … where two works would share a label, sorted by author and year.
"""

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    """'Müller', 'Sharif Razavian', 'Ben-David': the last names, LaTeX decoded."""
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


def author_year(entry) -> str:
    """'Zhang et al. 2017', 'Frankle and Carbin 2019', 'Cybenko 1989'."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    if len(people) > 2:
        names = f"{_surname(people[0])} et al."
    else:
        names = " and ".join(_surname(p) for p in people) or entry.key
    return f"{names} {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(entry) for entry in entries]
        shared, seen = Counter(labels), Counter()
        for label in labels:
            if shared[label] > 1:
                seen[label] += 1
                label += ascii_lowercase[seen[label] - 1]
            yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)  # _config.yml: bibtex_default_style
    return {"parallel_read_safe": True, "parallel_write_safe": True}
