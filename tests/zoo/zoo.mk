# The model zoo and the converter (tests/zoo, python/modelship-convert): included by the Makefile.
ZOO_VENV ?= .venv-zoo

.PHONY: test-zoo
test-zoo: setup build ## The converter's tests and the model zoo (docs/model-zoo.md) through the real server
	MODELSHIP_SERVER_BIN=$(SERVER_BIN) $(ZOO_VENV)/bin/python -m pytest -q -p no:cacheprovider -W ignore::FutureWarning tests/zoo
	$(ZOO_VENV)/bin/python models/digits-cnn.py --check

.PHONY: model-zoo
model-zoo: setup build ## Rewrite docs/model-zoo.md from a run of the zoo
	ZOO_UPDATE=1 MODELSHIP_SERVER_BIN=$(SERVER_BIN) $(ZOO_VENV)/bin/python -m pytest -q -p no:cacheprovider -W ignore::FutureWarning tests/zoo/test_zoo.py
