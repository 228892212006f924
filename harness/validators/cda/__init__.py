"""CI-SIS CDA R2 validation: safe parsing, the ANS schema and schematrons, our header and PDF rules.

Entry point: :class:`CdaValidator` (``validate(bytes) -> CdaReport``). The ANS rules
are data, loaded from a TestContenuCDA folder (:class:`RuleSet`); see the modules
for each stage.
"""

from harness.validators.cda.report import CdaReport, Stage, StageReport, VoletChoice
from harness.validators.cda.rules import RULES_ENV, RulesError, RuleSet
from harness.validators.cda.validator import CdaValidator

__all__ = ["RULES_ENV", "CdaReport", "CdaValidator", "RuleSet", "RulesError", "Stage", "StageReport", "VoletChoice"]
