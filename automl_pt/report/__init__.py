"""``automl-pt report``: the HTML page and its figures."""
