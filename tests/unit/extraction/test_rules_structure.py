"""The rules engine on the structure of long notes: sections, items, time, cause, spelling,
grades and the review lane. Every example is written for these tests."""
from __future__ import annotations

import pytest

from services.inference.findings import Finding
from services.inference.rules.engine import RulesEngine
from services.inference.rules.grades import find_grades
from services.inference.rules.layout import build_layout
from services.inference.rules.pipeline import header_regex
from services.inference.rules.spelling import correction, misspellings


@pytest.fixture(scope="module")
def engine() -> RulesEngine:
    return RulesEngine()


def alerts(engine: RulesEngine, text: str) -> dict[str, Finding]:
    findings = engine.extract(text)
    for f in findings:
        assert text[f.start:f.end] == f.quote
    return {f.category: f for f in findings if f.confidence >= 0.5}


def reviews(engine: RulesEngine, text: str) -> dict[str, Finding]:
    return {f.category: f for f in engine.extract(text) if f.confidence < 0.5}


# --- sections and lead lines ---------------------------------------------------------------

@pytest.mark.parametrize("text", [
    # education introduced by a lead line: the list that follows is hypothetical
    "Plan to start nivolumab next week.\nSide effects reviewed with the patient:\n- colitis with diarrhea\n"
    "- pneumonitis\n- hepatitis\n\nRTC in 1 week.",
    # education in one sentence, long enough to outrun a token window
    "Starting atezolizumab today. We went over the possible side effects including fatigue, nausea, thyroid "
    "problems, skin rash and itching, inflammation of the lungs (pneumonitis) and bowel (colitis).",
    # a teaching statement about how a condition usually looks
    "You are on Keytruda. Pneumonitis from Keytruda usually starts with a dry cough.",
])
def test_education_is_not_present(engine, text):
    assert alerts(engine, text) == {}


def test_review_of_systems_and_negative_lists(engine):
    ros = ("On pembrolizumab, here for cycle 5.\nROS (nursing checklist): + fatigue, + diarrhea, - rash\n\n"
           "Assessment: tolerating treatment.")
    assert alerts(engine, ros) == {} and reviews(engine, ros) == {}
    wrapped = ("On ipilimumab and nivolumab.\nNeg: fever, chills, headache, vision change, cough, chest pain,\n"
               "palpitations, diarrhea, abdominal pain, dysuria, joint pain, rash.\nFeels well.")
    assert engine.extract(wrapped) == []
    positive_after = "On nivolumab.\nNeg: fever, cough; + immune-related colitis with 6 stools a day."
    assert set(alerts(engine, positive_after)) == {"colitis"}


def test_section_policy_ends_at_a_blank_line(engine):
    text = ("On pembrolizumab.\nMedications:\nlevothyroxine 50 mcg daily\n\n"
            "Hypothyroidism from pembrolizumab, on levothyroxine.")
    assert set(alerts(engine, text)) == {"thyroiditis"}
    assert alerts(engine, "On pembrolizumab.\nMedications:\nlevothyroxine 50 mcg daily for hypothyroidism") == {}


def test_past_history_with_status_words(engine):
    resolved = "On nivolumab since 2022.\nPMH:\n- ICI colitis 2022, treated with budesonide, resolved\n- HTN"
    assert alerts(engine, resolved) == {}
    replacement = "On nivolumab since 2022.\nPMH:\n- hypothyroidism due to nivolumab, on levothyroxine 75 mcg\n- HTN"
    assert set(alerts(engine, replacement)) == {"thyroiditis"}
    unattributed = "On nivolumab.\nPMH:\n- hypothyroidism on levothyroxine\n- HTN"
    assert alerts(engine, unattributed) == {}


def test_family_subject_beyond_the_token_window(engine):
    text = ("On pembrolizumab, doing well. Her younger brother, who lives in another state, was told last month "
            "that he has type 1 diabetes.")
    assert alerts(engine, text) == {}


def test_plans_to_monitor(engine):
    assert alerts(engine, "On durvalumab.\nPlan: monitor for pneumonitis; check TSH every cycle.") == {}


# --- time ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,present", [
    ("On pembrolizumab.\n1. Immune-mediated hepatitis, grade 3 in March\n   - prednisone taper finished\n"
     "   - LFTs back to baseline, resolved\n2. Melanoma - continue pembrolizumab", False),
    ("On pembrolizumab.\n1. Immune-mediated hepatitis, grade 2\n   - improving on prednisone taper\n"
     "   - resume pembrolizumab once resolved", True),
    ("On pembrolizumab. Immune-mediated colitis resolved in May; diarrhea recurred this week, now grade 2.", True),
])
def test_resolution_in_the_item(engine, text, present):
    result = alerts(engine, text)
    assert (("hepatitis" in result) or ("colitis" in result)) is present


def test_predates_the_checkpoint_inhibitor(engine):
    by_year = "Started nivolumab 04/2023.\nHypothyroidism dx 2011, stable on levothyroxine."
    assert alerts(engine, by_year) == {}
    by_words = "On pembrolizumab. Psoriasis-like rash, long-standing, unchanged."
    assert alerts(engine, by_words) == {} and reviews(engine, by_words) == {}
    after = "Started nivolumab 04/2023.\nHypothyroidism from nivolumab dx 2024, on levothyroxine."
    assert set(alerts(engine, after)) == {"thyroiditis"}


# --- cause ----------------------------------------------------------------------------------

def test_alternative_cause_anywhere_in_the_problem_item(engine):
    text = ("On pembrolizumab.\n\nAssessment and plan:\n2. Diarrhea, 6 stools a day\n"
            "   - stool C. difficile toxin positive\n   - oral vancomycin\n3. Melanoma - hold pembrolizumab")
    assert alerts(engine, text) == {} and reviews(engine, text) == {}


def test_attribution_anywhere_in_the_problem_item(engine):
    text = ("On durvalumab.\n\nAssessment:\n1. Pneumonitis, grade 2\n   - CT with new GGOs\n"
            "   - felt to be from durvalumab; prednisone 1 mg/kg")
    result = alerts(engine, text)
    assert set(result) == {"pneumonitis"} and result["pneumonitis"].attribution == "immunotherapy"
    assert result["pneumonitis"].grade == 2


def test_assessment_conclusion_overrules_the_history(engine):
    text = ("HPI: on pembrolizumab, new rash on both arms since Monday.\n\n"
            "Assessment:\n1. Rash - drug rash from doxycycline started last week; stop doxycycline.")
    assert alerts(engine, text) == {} and reviews(engine, text) == {}


@pytest.mark.parametrize("text", [
    "Metastatic melanoma on high-dose IL-2. Diarrhea and pruritic rash, expected toxicity.",
    "Bladder cancer on intravesical BCG. Hepatitis with fevers, granulomatous pattern.",
    "On pembrolizumab and axitinib. Diarrhea grade 2, attributed to axitinib; improved with a dose hold.",
])
def test_not_a_checkpoint_inhibitor(engine, text):
    assert alerts(engine, text) == {}


def test_secondary_adrenal_insufficiency_is_hypophysitis(engine):
    text = "On ipilimumab. Hypophysitis from ipilimumab with secondary (central) adrenal insufficiency, on hydrocortisone."
    assert set(alerts(engine, text)) == {"hypophysitis"}
    primary = "On nivolumab. Primary adrenal insufficiency due to nivolumab, on hydrocortisone and fludrocortisone."
    assert set(alerts(engine, primary)) == {"adrenal_insufficiency"}


# --- spelling -------------------------------------------------------------------------------

def test_misspelled_category_words(engine):
    result = alerts(engine, "On nivolumab. Assessment: immune mediated hepatitus, G2, starting prednisone.")
    assert set(result) == {"hepatitis"} and result["hepatitis"].grade == 2
    assert result["hepatitis"].attribution == "immunotherapy"
    assert set(alerts(engine, "On pembro. Pnuemonitis from pembrolizumab, grade 3.")) == {"pneumonitis"}
    assert alerts(engine, "On pembro. No evidence of myocarditus on MRI.") == {}


@pytest.mark.parametrize("word,category", [
    ("pnuemonitis", "pneumonitis"), ("myocarditus", "myocarditis"), ("dermatits", "dermatitis"),
    ("hypophisitis", "hypophysitis"), ("colitus", "colitis"), ("thyroidits", "thyroiditis"),
])
def test_spelling_corrections(word, category):
    assert correction(word) == category


@pytest.mark.parametrize("word", [
    "position", "positive", "politics", "condition", "hospital", "hepatic", "nephritic", "nephrotic", "hypothyroid",
    "myositis", "pericarditis", "pancreatitis", "colonoscopy", "diarrheal", "pruritic", "colitis", "dermatologist",
    "protocol", "medication", "treatment", "patient", "symptoms", "coliform",
])
def test_common_and_correct_words_are_not_corrected(word):
    assert correction(word) is None


def test_misspellings_offsets():
    text = "Seen for myocarditus and hepatits."
    assert [(text[s:e], c) for s, e, c in misspellings(text)] == [("myocarditus", "myocarditis"),
                                                                   ("hepatits", "hepatitis")]


# --- grades ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,grade", [
    ("immune colitis, Grade II", 2), ("colitis gr. 3", 3), ("colitis Gr2", 2), ("colitis G 4", 4),
    ("colitis CTCAE grade three", 3), ("colitis grade 1-2", 2), ("colitis grade 2 to 3", 3), ("colitis G2/3", 3),
    ("resume once colitis <= G1", None), ("hold for grade >= 2 colitis", None), ("Gleason grade 4 tumour", None),
])
def test_grade_normalisation(text, grade):
    found = find_grades(text)
    assert (found[0].grade if found else None) == grade


def test_current_grade_wins(engine):
    text = "On cemiplimab. Immune-related dermatitis, initially G3 at cycle 4, now G1 on topical steroids."
    assert alerts(engine, text)["dermatitis"].grade == 1


def test_g4_in_a_long_note(engine):
    filler = "Vitals stable. Labs reviewed and unremarkable apart from the troponin. " * 40
    text = f"Cardiology H&P.\n{filler}\nAssessment:\n1. ICI myocarditis (nivolumab), G4 - ICU, pulse steroids.\n{filler}"
    result = alerts(engine, text)
    assert result["myocarditis"].grade == 4


# --- review lane ----------------------------------------------------------------------------

def test_open_questions_go_to_review_not_alerts(engine):
    text = "On nivolumab. Concern for immune-mediated colitis; stool studies pending."
    assert alerts(engine, text) == {}
    assert reviews(engine, text)["colitis"].confidence == 0.4
    treated = "On nivolumab. Possible immune-mediated colitis; started prednisone 1 mg/kg today."
    assert set(alerts(engine, treated)) == {"colitis"}


def test_layout_items():
    text = ("Assessment:\n1. Colitis, grade 2\n   - C. diff negative\n   - budesonide\n2. Rash\n\n"
            "PMH:\n- HTN\n- CKD\n")
    layout = build_layout(text, header_regex())
    first = layout.item(text.index("budesonide"))
    assert text[first[0]:first[1]].startswith("1. Colitis") and "budesonide" in text[first[0]:first[1]]
    assert layout.item(text.index("Rash")) != first
    assert layout.item(text.index("HTN")) != layout.item(text.index("CKD"))


def test_target_spans_match_medspacy_target_matcher():
    from services.inference.rules.pipeline import MISSPELLINGS, build_pipeline

    bare, fast = build_pipeline(engine=False), build_pipeline(engine=True)
    fast.remove_pipe(MISSPELLINGS)
    notes = [
        "On ipi/nivo. Immune-mediated colitis grade 3; C. difficile toxin negative. No pneumonitis.",
        "PMH: Hashimoto's thyroiditis, type 2 diabetes on metformin. Radiation pneumonitis 2019.\n"
        "A/P: AKI, prerenal from vomiting; ICI nephritis less likely. Rising LFTs attributed to liver mets.",
        "Secondary adrenal insufficiency from hypophysitis (ipilimumab-induced). IL-2 rash. TIL therapy.",
        "Immune-related colitis diarrhea and ICI-ILD; nivo hepatitis hepatitis; immune checkpoint\ninhibitor colitis.",
        "pembro-related rash, ipi / nivo colitis-like picture, immune mediated severe pneumonitis.",
    ]
    for text in notes:
        expected = [(e.start, e.end, e.label_, e._.target_rule.literal) for e in bare(text).ents]
        assert [(e.start, e.end, e.label_, e._.target_rule.literal) for e in fast(text).ents] == expected


@pytest.mark.parametrize("text,present", [
    ("On pembrolizumab. AKI due to dehydration from poor oral intake, improving with fluids.", False),
    ("On pembrolizumab. New rash attributed to the laundry soap she switched to.", False),
    ("On pembrolizumab. Diarrhea due to immune-mediated colitis, grade 2.", True),
    ("On ipilimumab. Colitis, grade 2, not due to infection (stool studies negative), felt to be from ipilimumab.", True),
])
def test_a_stated_cause_that_is_not_the_checkpoint_inhibitor(engine, text, present):
    assert bool(alerts(engine, text)) is present


@pytest.mark.parametrize("text,present", [
    ("On pembrolizumab. No evidence of colitis, hepatitis, pneumonitis, nephritis, myocarditis, thyroid dysfunction, "
     "hypophysitis or adrenal insufficiency on today's labs and imaging.", False),
    ("On pembrolizumab. No fever, but new immune-related colitis with 6 stools a day.", True),
    ("On pembrolizumab. Denies cough, reports diarrhea from ICI colitis, grade 2.", True),
    ("On nivolumab. s/p ICI colitis, off steroids.", False),
])
def test_negated_lists_of_any_length_and_status_post(engine, text, present):
    assert bool(alerts(engine, text)) is present


def test_nothing_is_an_irae_before_the_drug_starts(engine):
    planned = "Consult for melanoma. Plan to start nivolumab next week. Diarrhea for 2 days, grade 1."
    assert engine.extract(planned) == []
    started = "Melanoma on nivolumab since March. Diarrhea for 2 days, grade 1."
    assert set(alerts(engine, started)) == {"colitis"}


def test_section_spans_match_medspacy_sectionizer():
    from services.inference.rules.pipeline import build_pipeline, section_at

    bare, fast = build_pipeline(engine=False), build_pipeline(engine=True)
    text = ("CC: rash\nHPI: on nivolumab, rash x3 days.\nROS (RN checklist): + itching\nPMH:\n- HTN\n\n"
            "Family history: mother with hypothyroidism\nASSESSMENT AND PLAN\n1. Rash, grade 1 - topical steroids")
    a, b = bare(text), fast(text)
    assert [s.start_char for s in a.sents] == [s.start_char for s in b.sents]
    for token in range(len(a)):
        assert section_at(a, token) == section_at(b, token)
    assert section_at(b, len(b) - 1)[0] == "assessment_and_plan"
