"""The short API: scikit-learn estimators on the lockstep network.

- :mod:`~xpnet.estimators.classifier`: :class:`Classifier` (fit / predict / score; ``*_all``
  for M lockstep models);
- :mod:`~xpnet.estimators.classifier_cv`: :class:`ClassifierCV`, a grid fitted at once;
- :mod:`~xpnet.estimators.keywords`, :mod:`~xpnet.estimators.settings`: the estimators'
  keywords, derived from the option dataclasses, and their checks;
- :mod:`~xpnet.estimators.lockstep`: the ``*_all`` answers of M lockstep models;
- :mod:`~xpnet.estimators.scoring`: how a search scores its candidates;
- :mod:`~xpnet.estimators.common`: what both share (array API dispatch, labels, checks);
- :mod:`~xpnet.estimators.files`: fitted estimators in ``.npz`` files, without pickle.

Imports: :mod:`xpnet.search`, :mod:`xpnet.training`, :mod:`xpnet.network`,
:mod:`xpnet.backend`, :mod:`xpnet.step`, :mod:`xpnet.nn`, :mod:`xpnet.base`,
:mod:`xpnet.errors`.
"""
