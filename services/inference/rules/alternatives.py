"""Named alternative causes per category (the taxonomy's "not this category" column).

An asserted alternative cause (not negated, not uncertain, not hypothetical, not about
family) stops a category being reported for a mention that is not explicitly attributed to
immunotherapy. Where the cause and the condition form one phrase ("C. difficile colitis",
"radiation pneumonitis", "prerenal AKI"), the longer alternative span wins over the category
term, so the condition is never seen as an irAE mention at all.

Kinds, by how far they reach:
- ``acute``: a named current cause (an infection, a diagnosis); counts anywhere in the note
  while current (not historical).
- ``chronic``: a pre-existing disease (Hashimoto's, type 2 diabetes, pituitary adenoma);
  counts anywhere in the note, even stated as history.
- ``local``: a bare drug or circumstance (irinotecan, NSAIDs, IV contrast, radiotherapy)
  that is common in oncology histories; counts only in the mention's own item (the problem
  or assessment entry, bullet or paragraph line).
- ``drug``: the item attributes the condition to a targeted or cytotoxic drug (rule 13); local.
- ``test``: a test for a cause ("hepatitis B serology", "HBV DNA"); it is never a cause itself,
  it is matched only so that the category word inside it is not read as a mention.
"""
from __future__ import annotations

_STEROIDS = (r"(?:high[- ]dose\s+)?(?:steroids?|corticosteroids?|glucocorticoids?|prednisone|prednisolone|dexamethasone"
             r"|decadron|methylprednisolone|solu-?medrol|hydrocortisone)")
_ANTIBIOTICS = (r"(?:antibiotics?|pip-?tazo|amoxicillin|augmentin|ampicillin|penicillin|cephalexin|keflex|ceftriaxone|cefepime"
                r"|bactrim|tmp-?smx|trimethoprim[- ]sulfamethoxazole|sulfa|vancomycin|piperacillin|zosyn|levofloxacin"
                r"|ciprofloxacin|doxycycline|clindamycin|azithromycin|nafcillin|allopurinol|phenytoin|lamotrigine)")
_CAUSE = r"(?:due\s+to|from|secondary\s+to|2/2|caused\s+by|attributed\s+to|attributable\s+to|related\s+to|likely\s+from|after\s+starting|reaction\s+to|allergy\s+to|allergic\s+to|induced\s+by)"
_NEPHROTOXINS = (r"(?:cisplatin|carboplatin|nsaids?|ibuprofen|naproxen|ketorolac|vancomycin|aminoglycosides?|gentamicin"
                 r"|tenofovir|zoledronic\s+acid|methotrexate|pemetrexed|iv\s+contrast|contrast)")

#: Drugs that are neither checkpoint inhibitors nor their treatment: targeted and cytotoxic
#: therapy. A condition the item attributes to one of them is not an irAE (rule 13).
OTHER_DRUGS = (r"fluoropyrimidines?|5-?fu|fluorouracil|capecitabine|irinotecan|docetaxel|paclitaxel|gemcitabine|axitinib|sunitinib|cabozantinib|lenvatinib|pazopanib|regorafenib|sorafenib|imatinib|dasatinib|nilotinib"
               r"|osimertinib|erlotinib|gefitinib|afatinib|neratinib|lapatinib|tucatinib|abemaciclib|palbociclib|ribociclib"
               r"|idelalisib|alpelisib|everolimus|temsirolimus|dabrafenib|trametinib|vemurafenib|encorafenib|binimetinib"
               r"|cobimetinib|olaparib|niraparib|bevacizumab|ramucirumab|cetuximab|panitumumab|trastuzumab(?:\s+deruxtecan)?"
               r"|enfortumab(?:\s+vedotin)?|sacituzumab|lenalidomide|(?:the\s+)?(?:tki|chemotherapy|chemo)")
#: A drug's own toxicity named as the favoured explanation ("most consistent with lenvatinib (VEGFR
#: TKI) toxicity", "typical of enfortumab vedotin skin toxicity").
_TOXICITY = r"(?:\s*\([^)\n]{1,30}\))?[- ](?:induced|related|associated|toxicity|effect|(?:skin|gi|cutaneous)\s+toxicity|side\s+effect)"
_DRUG_CAUSE = (rf"(?:{_CAUSE}|after\s+starting|since\s+starting|on)\s+(?:the\s+|his\s+|her\s+)?(?:{OTHER_DRUGS})"
               rf"|(?:(?:most\s+)?consistent\s+with|c/w|typical\s+of|favou?r(?:s|ed)?|most\s+likely)\s+(?:the\s+)?(?:{OTHER_DRUGS}){_TOXICITY}"
               rf"|(?:{OTHER_DRUGS}){_TOXICITY}")

ALTERNATIVE_CAUSES: dict[str, dict[str, str]] = {
    "colitis": {
        "acute": (r"c\.?\s*diff(?:icile)?(?:\s+(?:colitis|infection|toxin|pcr))?|cdiff|(?-i:CDI)|clostridi(?:um|oides)\s+difficile(?:\s+colitis)?"
                  r"|(?:infectious|bacterial|viral|ischemic|pseudomembranous|neutropenic|cmv)\s+(?:entero)?colitis"
                  r"|(?:infectious|viral|bacterial|osmotic|antibiotic[- ]associated|chemotherapy[- ](?:induced|related|associated)|chemo[- ](?:induced|related))\s+diarrh(?:o)?ea|chemo(?:therapy)?\s+diarrh(?:o)?ea"
                  r"|(?:viral\s+)?gastroenteritis|norovirus|rotavirus|campylobacter|salmonella|shigella|giardia"
                  r"|stool\s+(?:cultures?|pcr|studies|panel)\s+(?:positive|\+)|gi\s+(?:pcr\s+)?panel\s+positive|radiation\s+proctitis"),
        "chronic": r"crohn'?s(?:\s+disease)?|ulcerative\s+colitis|inflammatory\s+bowel\s+disease|(?-i:IBD)|microscopic\s+colitis|irritable\s+bowel(?:\s+syndrome)?|(?-i:IBS)|short\s+gut",
        "local": (rf"5-?fu|fluorouracil|fluoropyrimidines?|capecitabine|xeloda|irinotecan|camptosar|folfiri(?:nox)?|folfox|laxatives?|bowel\s+prep|lactulose|miralax|tube\s+feeds?"
                  rf"|(?:since|after)\s+starting\s+(?:the\s+)?{_ANTIBIOTICS}|antibiotic[- ]associated"),
    },
    "pneumonitis": {
        "acute": (r"radiation(?:[- ]induced)?\s+pneumonitis|radiation[- ]induced\s+lung\s+injury|post-?radiation\s+(?:changes|fibrosis|pneumonitis)"
                  r"|pneumonia|(?-i:CAP|HCAP)|aspiration\s+(?:pneumonia|pneumonitis|event)|pneumocystis|(?-i:PJP|PCP)|covid(?:-?19)?(?:\s+pneumonia)?(?!\s*(?:vaccines?|vaccinations?|boosters?|shots?|immunizations?|vax))|sars-?cov-?2"
                  r"|influenza\s+(?:a|b|infection|pneumonia|positive)|rsv\s+(?:positive|infection)|(?:bacterial|viral|fungal)\s+(?:pneumonia|infection)"
                  r"|lung\s+infection|(?:lower\s+)?respiratory\s+(?:tract\s+)?infection|lymphangitic\s+(?:spread|carcinomatosis)"
                  r"|(?:amiodarone|bleomycin|gemcitabine|docetaxel)[- ](?:induced|related)\s+(?:pneumonitis|lung\s+toxicity)|hypersensitivity\s+pneumonitis"),
        "chronic": r"idiopathic\s+pulmonary\s+fibrosis|(?-i:IPF)|pre-?existing\s+ild|known\s+ild|sarcoidosis",
        "local": r"radiation(?:\s+(?:therapy|treatment|field|port))?|radiotherapy|(?-i:XRT|SBRT|RT)|pulmonary\s+edema|heart\s+failure|chf|fluid\s+overload|amiodarone|bleomycin",
    },
    "hepatitis": {
        "acute": (r"(?:viral|infectious|alcoholic|ischemic|cmv|ebv|hsv)\s+hepatitis|hepatitis\s+(?:a|b|c|e)(?:\s+(?:virus|infection|reactivation|flare))?"
                  r"|(?:hbv|hcv|hep\s*b|hep\s*c)\s+(?:reactivation|flare|infection|viremia)|hbsag\s+(?:positive|\+)"
                  r"|(?:liver|hepatic)\s+(?:tumou?r\s+)?(?:metastases|metastasis|mets|lesions|progression)|hepatic\s+metastatic\s+disease|metastatic\s+disease\s+(?:to|in|of)\s+the\s+liver"
                  r"|(?:new\s+)?intrahepatic\s+(?:lesions|metastases|mets)"
                  r"|biliary\s+obstruction|cholangitis|choledocholithiasis|gallstones?|acetaminophen\s+(?:toxicity|overdose)|tylenol\s+(?:toxicity|overdose)"
                  r"|drug[- ]induced\s+liver\s+injury|(?-i:DILI)|congestive\s+hepatopathy|shock\s+liver|alcohol(?:ic)?\s+(?:use\s+disorder|abuse|liver\s+disease)|heavy\s+(?:alcohol|etoh)|etoh\s+abuse"),
        "chronic": r"cirrhosis|(?-i:NASH|NAFLD)|fatty\s+liver|hemochromatosis|chronic\s+hepatitis\s+(?:b|c)",
        "local": (rf"{_CAUSE}\s+(?:the\s+)?(?:{_ANTIBIOTICS}|statins?|atorvastatin|fluconazole|voriconazole|acetaminophen|tylenol|methotrexate|alcohol|tpn)|amiodarone"
                  r"|muscle[- ](?:derived|source|origin)|of\s+muscle\s+origin|myositis|rhabdomyolysis"),
        #: tests for a cause, named so that "hepatitis" inside them is not a mention; never a cause.
        "test": (r"hep\s*(?:a|b|c)(?:\s+(?:serolog(?:y|ies)|panel|ab|antibody|sag|core\s+ab))?|hbv(?:\s+dna)?|hcv(?:\s+(?:ab|rna|antibody))?"
                 r"|hbsag|hbsab|hbcab|anti-?hbc|hepatitis\s+(?:a|b|c\s+)?(?:panel|serolog(?:y|ies)|screen(?:ing)?|studies)"
                 r"|viral\s+(?:hepatitis\s+)?(?:panel|serolog(?:y|ies)|studies)"),
    },
    "dermatitis": {
        "acute": (rf"contact\s+dermatitis|allergic\s+contact|irritant\s+dermatitis|poison\s+ivy|stasis\s+dermatitis|seborrheic\s+dermatitis"
                  rf"|drug\s+rash\s+{_CAUSE}\s+(?:the\s+)?{_ANTIBIOTICS}|{_ANTIBIOTICS}[- ](?:induced|related|associated)\s+(?:rash|eruption|dermatitis)"
                  rf"|cellulitis|herpes\s+zoster|shingles|scabies|tinea|candidiasis|intertrigo|radiation\s+dermatitis"
                  rf"|hand[- ]foot\s+syndrome|acneiform\s+rash|viral\s+exanthem|(?:laundry\s+)?detergent|new\s+soap|nickel"),
        "chronic": r"psoriasis|atopic\s+dermatitis|eczema|chronic\s+urticaria|rosacea",
        "local": rf"{_CAUSE}\s+(?:the\s+|his\s+|her\s+)?(?:{_ANTIBIOTICS}|egfr\s+inhibitors?|cetuximab|erlotinib|osimertinib)|{_ANTIBIOTICS}",
    },
    "thyroiditis": {
        "acute": r"post-?partum\s+thyroiditis|subacute\s+(?:granulomatous\s+)?thyroiditis|de\s+quervain'?s?(?:\s+thyroiditis)?",
        "chronic": (r"hashimoto'?s?(?:\s+(?:thyroiditis|disease))?|graves'?(?:\s+disease)?|thyroidectomy|post-?surgical\s+hypothyroidism"
                    r"|congenital\s+hypothyroidism|radioactive\s+iodine|rai\s+ablation|post-?rai|(?:longstanding|long-standing|known|chronic|pre-?existing|lifelong)\s+hypothyroidism"
                    r"|(?:longstanding|long-standing|known|pre-?existing)\s+(?:hyperthyroidism|thyroid\s+disease)|multinodular\s+goiter|toxic\s+(?:adenoma|nodule)"
                    r"|post-?radiation\s+hypothyroidism|radiation[- ]induced\s+hypothyroidism|hypothyroidism\s+(?:is\s+|was\s+)?post-?radiation"),
        "local": r"amiodarone|iodinated\s+contrast|iodine\s+load|lithium",
    },
    "hypophysitis": {
        "acute": r"pituitary\s+(?:metastasis|metastases|apoplexy|hemorrhage)|sheehan'?s?(?:\s+syndrome)?",
        "chronic": r"pituitary\s+(?:macro|micro)?adenoma|(?:macro|micro)adenoma|prolactinoma|craniopharyngioma|transsphenoidal\s+(?:resection|surgery)|rathke'?s?\s+cleft",
        "local": r"(?:brain|cranial|whole[- ]brain)\s+radiation|(?-i:WBRT)|opioids?",
    },
    "adrenal_insufficiency": {
        "acute": (rf"steroid\s+withdrawal|(?:abrupt|rapid)\s+(?:steroid\s+)?(?:taper|discontinuation|cessation)|(?:tertiary|iatrogenic)\s+adrenal\s+insufficiency"
                  rf"|(?:secondary\s+)?adrenal\s+insufficiency\s+(?:from|due\s+to|secondary\s+to)\s+(?:exogenous\s+|chronic\s+)?{_STEROIDS}"
                  rf"|exogenous\s+{_STEROIDS}|(?:stopped|ran\s+out\s+of|missed|discontinued|self-discontinued)\s+(?:taking\s+)?(?:his\s+|her\s+|the\s+)?{_STEROIDS}"
                  rf"|adrenal\s+(?:metastases|metastasis|mets|hemorrhage)|bilateral\s+adrenalectomy|waterhouse"),
        "chronic": r"known\s+addison'?s(?:\s+disease)?|congenital\s+adrenal\s+hyperplasia",
        "local": r"ketoconazole|mitotane|etomidate|sepsis|septic\s+shock|megestrol",
    },
    "myocarditis": {
        "acute": (r"demand\s+ischemia|type\s*(?:2|ii)\s+(?:mi|myocardial\s+infarction)|(?-i:NSTEMI|STEMI|ACS)|acute\s+coronary\s+syndrome|myocardial\s+infarction"
                  r"|(?:viral|infectious|covid|lymphocytic\s+viral|post-?viral|giant\s+cell\s+viral)\s+myocarditis|coxsackie(?:virus)?|parvovirus|takotsubo|stress\s+cardiomyopathy"
                  r"|(?:anthracycline|doxorubicin|trastuzumab)[- ](?:induced|related|associated)\s+cardio(?:myopathy|toxicity)"),
        "chronic": r"coronary\s+artery\s+disease|(?-i:CAD)|ischemic\s+cardiomyopathy|known\s+cardiomyopathy|(?-i:HFrEF)",
        "local": r"pulmonary\s+embol(?:ism|us)|sepsis|septic\s+shock|tachyarrhythmia|(?:atrial\s+fibrillation|afib|a-?fib)\s+with\s+(?:rvr|rapid)|ckd|renal\s+failure|anthracycline|doxorubicin|trastuzumab",
    },
    "nephritis": {
        "acute": (r"pre-?renal(?:\s+(?:aki|azotemia|acute\s+kidney\s+injury|etiology|physiology|picture))?|(?:volume|intravascular)\s+depletion|dehydration|hypovolemia"
                  r"|contrast(?:[- ]induced|[- ]associated)?\s+(?:nephropathy|aki|nephrotoxicity|acute\s+kidney\s+injury)|(?-i:CIN)"
                  r"|acute\s+tubular\s+necrosis|(?-i:ATN)|obstructive\s+uropathy|hydronephrosis|urinary\s+retention|post-?renal(?:\s+aki)?"
                  r"|rhabdomyolysis|hepatorenal(?:\s+syndrome)?|cardiorenal(?:\s+syndrome)?|tumor\s+lysis(?:\s+syndrome)?"
                  rf"|{_NEPHROTOXINS}(?:[- ](?:induced|related|associated))?\s+(?:aki|nephrotoxicity|nephropathy|kidney\s+injury|renal\s+injury|atn)"),
        "chronic": r"ckd(?:\s+stage\s+\w+)?|chronic\s+kidney\s+disease|diabetic\s+nephropathy",
        "local": rf"{_CAUSE}\s+(?:the\s+)?{_NEPHROTOXINS}|poor\s+(?:po|oral)\s+intake|hypotension|sepsis|septic\s+shock|diuresis|over-?diuresis|vomiting",
    },
    "diabetes": {
        "acute": (rf"{_STEROIDS}[- ](?:induced|related|associated)\s+(?:hyperglycemia|diabetes)|steroid\s+hyperglycemia|stress\s+hyperglycemia"
                  rf"|(?:hyperglycemia|diabetes)\s+(?:due\s+to|from|secondary\s+to|2/2|on)\s+{_STEROIDS}|pancreatectomy|whipple"),
        "chronic": (r"type\s*(?:2|ii|two)\s+diabetes(?:\s+mellitus)?|t2dm|t2d|dm\s*(?:type\s*)?(?:2|ii)|niddm|non-?insulin[- ]dependent\s+diabetes"
                    r"|(?:longstanding|long-standing|known|pre-?existing|chronic|lifelong)\s+(?:type\s*(?:1|i|one)\s+)?diabetes(?:\s+mellitus)?"
                    r"|(?:type\s*(?:1|i|one)\s+diabetes|t1dm)\s+since\s+(?:childhood|age|\d{4})|juvenile(?:[- ]onset)?\s+diabetes|childhood[- ]onset\s+diabetes|metformin|glipizide|sitagliptin|prediabetes|pre-diabetes"),
        "local": rf"{_STEROIDS}|pancreatitis|(?-i:TPN)",
    },
}

for _entries in ALTERNATIVE_CAUSES.values():
    _entries["drug"] = _DRUG_CAUSE
