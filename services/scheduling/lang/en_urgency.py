"""English: the urgent-symptom lexicon (``URGENCY``, read by ``services.scheduling.urgency``)."""
from __future__ import annotations

#: Urgent symptoms (``services.scheduling.urgency``): a lexicon of symptom concepts with the guards that
#: cancel a match (negation, "if", past, resolved, idioms and tests). Lower case, accent-folded text.
_BODY_OUT = (r"stools?|poop\w*|poo|bms?|bowel\w*|toilet|bowl|diar\w*|wip(e|ed|ing)|urine|pee\w*|vomit\w*|threw up|"
             r"throw\w* up|puk\w*|cough\w*|spit\w*|rectum|butt|bottom|mucus|nose")
_INTENSE = (r"severe|really bad|very bad|so bad|too bad|terrible|horrible|horrendous|awful|worst|unbearable|excruciating|"
            r"intense|sharp|agoni\w*|[7-9] ?/ ?10|10 ?/ ?10|can'?t stand up( straight)?|doubled over|really (hurt\w*|bad)|"
            r"so much|a lot|killing me|out of nowhere|sudden\w*")
_FEVER = r"fever\w*|feaver|fevre|temp|temperature|febrile"
_HOT = r"3[89]([.,]\d+)?|4[0-2]([.,]\d+)?|100[.,][4-9]\d*|10[1-6]([.,]\d+)?"
_MANY = r"[6-9]|[1-9]\d|six|seven|eight|nine|ten|eleven|twelve|a dozen"
_SYMPTOM = (r"pain(s|ful|fully)?|hurt(s|ing)?|ache(s|y)?|aching|sore(s|ness)?|rash(es)?|itch(y|es|ing|iness)?|hives|cough\w*|"
            r"nause\w*|queasy|vomit\w*|diarrh\w*|fever\w*|chills|swelling|swollen|swells|swelled|cramps?|cramping|bleed\w*|dizz\w*|"
            r"weak(ness|er)?|numb(ness|ed|ing)?|tingl\w*|headaches?|migraines?|breath(ing|less|lessness)?|wheez\w*|tired(ness)?|"
            r"fatigue\w*|exhaust(ed|ion)|sweat(s|ing|y)?|symptoms?|side effects?|constipat\w*|bloat\w*|jaundice|blotch\w*|lumps?")
_WORSE = (r"worse|worsening|getting bad|more and more|spreading|spread|increas\w*|(not|isn'?t|aren'?t|no) (getting )?better|"
          r"(won'?t|doesn'?t|does not|didn'?t|isn'?t|not) go(ing)? away|came on|out of nowhere|all of a sudden|suddenly|"
          r"keeps? (getting|coming back)|more than usual|than usual|than before|than yesterday|never had|first time|not improving|"
          r"since (yesterday|last night|this morning|\w+day)|started|starting|began")
URGENCY = {
    "concepts": {
        "chest": [
            r"(squeez\w*|crush\w*|pressing on|sitting on|pushing on) (my|his|her|the) chest",
            r"chest ([\w']+ ){0,3}(feels? )?(funny|weird|strange|off|tight\w*|heavy)",
            r"(pain|ache|pressure|tightness) ([\w']+ ){0,3}(radiat\w*|spread\w*|going|goes|shoot\w*|moving) ([\w']+ ){0,3}(arm|jaw|neck|shoulder)",
            r"heart (hurts|hurting|aches|pain)", r"angina",
            r"chest (pain|pian|pains|pressure|tightness|tight|discomfort|heaviness)", r"\bcp\b",
            r"chest ([\w']+ ){0,4}(hurt\w*|pain\w*|duele|dolor|painful|tight|pressure|heavy|ache\w*|squeez\w*|burn\w*|crush\w*)",
            r"(pain\w*|pressure|tight\w*|squeez\w*|heav\w*|weight|burning) (feeling |sensation )?(in|on|across) (my|the|his|her) "
            r"chest", r"sitting on (my|his|her) chest", r"heart attack"],
        "breathing": [
            r"(lips?|face|skin|fingers?|nails|toes|he'?s|she'?s|he is|she is|i'?m|i am|he|she|i) ([\w']+ ){0,2}(turning|turned|going|gone|"
            r"look\w*) ([\w']+ )?(blue|grey|gray|purple)",
            r"(can'?t|cannot|couldn'?t|can not|unable to) (get|take|catch|draw) (a |my )?(full |deep |good |proper )?breath",
            r"(short|shortness) ([\w']+ ){0,2}(breath|air)", r"air hunger", r"(not|can'?t|cannot) get(ting)? enough (air|oxygen)",
            r"(need|needing|gasping for|fighting for|struggling for) (more )?air", r"suffocat\w*", r"smother\w*",
            r"lungs? ([\w']+ ){0,3}(burn\w*|tight\w*|heavy|rattl\w*|crackl\w*|hurt\w*|closing)", r"puffing", r"panting", r"huffing",
            r"out of puff", r"(oxygen|sats?|saturation|spo2|o2|pulse ox\w*) ([\w']+ ){0,3}(8\d|9[0-2]|low|dropping)",
            r"cough\w* ([\w']+ ){0,4}(can'?t stop|won'?t stop|nonstop|non-stop|all night|worse|getting worse)",
            r"breath\w* ([\w']+ ){0,3}(hard|difficult|tough|struggle|labou?red|shallow|short|fast|rapid)",
            r"short(ness)? of breath", r"out of breath", r"breathless\w*", r"winded", r"gasp\w*", r"wheez\w*", r"chok\w*",
            r"(can'?t|cannot|can not|couldn'?t|could not|unable to|not able to|no puedo|no puede|hard to|struggling to|struggle to|"
            r"hardly|barely|"
            r"trouble|difficulty|difficult to|hard time|problems?) ([\w']+ )?(breathe?|breath\w*|breth\w*)",
            r"can'?t (catch|get) (my|a full|a|his|her) breath", r"breathing ([\w']+ ){0,2}(fast|hard|heavy|heavily|rapid\w*|funny|"
            r"weird|noisy|labou?red|shallow)", r"(lips?|nails|fingertips|face) ([\w']+ ){0,3}(blue|grey|gray|purple|bluish)",
            r"(throat|airway|tongue) ([\w']+ ){0,4}(clos\w*|swell\w*|swollen|tight\w*)",
            r"breathing (is|has been|got|getting|feels) ([\w']+ )?(bad|hard|difficult|worse|labou?red|tough)",
            r"can'?t lie (flat|down) ([\w']+ ){0,4}breath\w*", r"(need|use|using) ([2-9]|two|three|four) pillows"],
        "bleeding": [
            r"(poop\w*|stools?|bms?|poo|pee|peeing|urine|vomit\w*|spit\w*|phlegm|mucus|sputum|snot) ([\w']+ ){0,3}(red|bloody|pink|maroon)",
            r"(red|bloody|pink|maroon) (poop\w*|stools?|pee|urine|vomit|spit|phlegm|mucus|sputum)",
            r"nose ?bleed\w* ([\w']+ ){0,3}(\d+ (minutes|mins|hours|hrs)|an hour|hours|half an hour|won'?t stop|keeps? coming back)",
            r"bright red blood", r"blood ([\w']+ ){0,3}(tissue|toilet paper|underwear|pants|pad|sheets?)",
            r"(poop\w*|stools?|bms?|poo) ([\w']+ ){0,3}(black|tarry|maroon)",
            r"(blood|bloody) ([\w']+ ){0,3}(in|on|from|when) ([\w']+ ){0,2}(stool|poop|toilet|urine|pee|mouth|nose|vomit|gums|spit|phlegm|"
            r"mucus|sputum|wipe|wiping|cough\w*)", r"bleeding gums", r"gums ([\w']+ ){0,2}bleed\w*",
            r"(pee|urine|wee) ([\w']+ ){0,3}(red|pink|bloody)", r"(red|pink|bloody) (pee|urine|wee)", r"h(a)?emorrhag\w*",
            r"bruis\w* ([\w']+ ){0,3}(everywhere|all over|for no reason|easily|out of nowhere)", r"(big|huge|lots of|many|new) bruises",
            r"(vomit\w*|threw up|throwing up|cough\w*|spit\w*) ([\w']+ ){0,3}(red|bloody)",
            (r"blood\w*|bleed\w*", _BODY_OUT), r"(black|tarry|maroon|negra|negro|negras) ([\w']+ )?(stools?|poop|poo|bms?|diar\w*)",
            r"(stools?|poop|poo|bms?|bowel movements?) ([\w']+ ){0,3}(black|tarry|negra|negro|maroon)", r"coffee[- ]grounds?",
            r"(there'?s|there is|there was|there has been|there'?s been|with) (some |a lot of |lots of |a little |so much )?blood",
            r"bleeding (a lot|heavily|won'?t stop|that won'?t stop|from|everywhere)", r"(rectal|bowel|rectum) bleed\w*",
            r"(nose ?bleed\w*|bleeding) ([\w']+ ){0,3}(won'?t|doesn'?t|didn'?t|not|will not) stop\w*"],
        "syncope": [
            r"(nearly|almost) (passed out|fainted|blacked out|collapsed|fell over)", r"unconscious", r"unresponsive",
            r"(woke|came to|came round|came around) (up )?on the (floor|ground)", r"found (him|her|me) on the (floor|ground)",
            r"keel\w* over", r"(legs|knees) (gave out|buckled|gave way)",
            r"pass(ed|ing|es)? out", r"faint(ed|ing|ish)?", r"black(ed|ing)? out", r"blackouts?",
            r"everything went (black|dark|white)", r"lost consciousness", r"collaps\w*"],
        "dizziness": [
            r"(room|everything|world|floor) ([\w']+ ){0,2}(spinning|tilting|moving|swaying|rocking|turning)",
            r"dizz\w* ([\w']+ ){0,4}(all the time|constantly|every time|won'?t stop|worse|all day)",
            r"(keep|kept|keeps) (almost )?(falling|losing (my|his|her) balance)", r"(lost|losing) (my|his|her) balance", r"unsteady",
            r"off balance",
            r"(so|very|really|super|extremely|too|severely) (dizzy|dizy|dizzie|lightheaded|light-headed|woozy)",
            r"dizz?y ([\w']+ ){0,4}(fell|fall|falling|when i (stand|get up)|can'?t stand)", r"(fell|fall\w*) ([\w']+ ){0,3}dizz?y",
            r"light-?headed", r"room ([\w']+ ){0,2}spinning", r"(everything|world) ([\w']+ ){0,2}spinning", r"vertigo"],
        "confusion": [
            r"words ([\w']+ ){0,3}(wrong|jumbled|garbled|mixed up|slurred|funny|weird)", r"(can'?t|cannot) (get|find) (my|the|his|her) words",
            r"(forget\w*|forgot) (where|who|what day|what year|how to|my way|the way|my own|names|words|things|everything|people)",
            r"memory ([\w']+ ){0,3}(loss|lapses?|going|gone|bad|worse|problems?|issues?|slipping|terrible)",
            r"(can'?t|cannot|couldn'?t) (remember|recall) (where|who|what day|how|my (name|address|way)|anything|things)",
            r"(don'?t|didn'?t|doesn'?t) know where (i|he|she) (am|is|was)", r"where am i\W*$",
            r"(brain|head|mind) ([\w']+ ){0,2}(fog\w*|foggy|fuzzy|cloudy|mush|slow)", r"foggy", r"fogginess",
            r"(not|isn'?t|wasn'?t|aren'?t) (thinking|talking|speaking) (straight|clearly|right|properly)",
            r"(can'?t|cannot) (think|focus|concentrate) (straight|clearly|at all)", r"making no sense", r"mak\w* no sense",
            r"(mixed|mixing|mixes) up (words|names|people|days)", r"(seeing|hearing) things", r"hallucinat\w*", r"out of it",
            r"spaced out", r"zoned out", r"delirious", r"delirium", r"lost track of (time|where)", r"word salad",
            r"(talking|speaking|words) ([\w']+ ){0,2}(jumbled|garbled|slurr\w*)",
            r"confus\w*", r"disorient\w*", r"(not|isn'?t|wasn'?t|aren'?t) mak\w* (any )?sense",
            r"(doesn'?t|does not|didn'?t|don'?t) (know|recogni[sz]e) (me|us|where|what day|who|what year|what month|what time it is|his wife|her husband|"
            r"(his|her|my) (own )?(kids|children|family|name|wife|husband|daughter|son))",
            r"got lost ([\w']+ ){0,5}(home|every (day|week)|familiar|i always|i know|my own|i go)",
            r"couldn'?t (remember|find) (the|my) way (home|back)", r"(not sure|doesn'?t know|don'?t know) what day it is",
            r"(very|so|really|too|extremely) (sleepy|drowsy)", r"hard to wake", r"won'?t wake up",
            r"acting (strange|weird|odd|funny|confused)", r"(talking|saying) (nonsense|gibberish|strange things)",
            r"not (herself|himself|myself) ([\w']+ ){0,3}(confus\w*|nonsense|strange|weird|sleepy|lost)", r"(keeps|kept) asking the same", r"slurr\w*",
            r"(trouble|difficulty) (speaking|talking|finding words)"],
        "seizure": [
            r"(had|having|has|have) a fit", r"eyes ([\w']+ ){0,2}roll\w* back", r"foam\w* at the mouth",
            r"(staring|stared) ([\w']+ ){0,3}(blank\w*|into space) ([\w']+ ){0,4}(respond\w*|answer\w*)",
            r"seizure\w*", r"convuls\w*", (r"shak\w*|trembl\w*|jerk\w*|twitch\w*",
                                           r"floor|ground|didn'?t answer|unresponsive|(wouldn'?t|didn'?t|not) respond\w*|"
                                           r"all over|couldn'?t talk|for (a|about a|like a) minute")],
        "skin": [
            r"blister\w*", r"peel\w*", r"(skin|it) (is )?(coming|falling) off", r"sores? ([\w']+ ){0,3}(mouth|lips?|tongue)",
            r"(mouth|lips?|tongue) ([\w']+ ){0,4}(sores?|ulcers?)", r"ulcers? in (my|the) mouth",
            r"(lips?|face|tongue|eyes?|eyelids?) ([\w']+ ){0,3}(swell\w*|swollen|puff\w*)",
            r"(swell\w*|swollen) ([\w']+ ){0,3}(lips?|face|tongue)", r"rash ([\w']+ ){0,3}(all over|everywhere|spreading|face)",
            r"eyes? ([\w']+ ){0,2}crust\w*", r"rash .{0,20}(mouth|eyes)", r"hives ([\w']+ ){0,3}(all over|everywhere)"],
        "jaundice": [
            r"(skin|eyes?|face|whites|he'?s|she'?s|he is|she is|i'?m|i am|he|she|i) ([\w']+ ){0,2}(turning|turned|going|gone|getting|"
            r"becoming|look\w*) ([\w']+ )?(yellow\w*)",
            r"(skin|eyes?|ojos|she|he|looks?|look|turned|gone|going|whites of) ([\w']+ ){0,3}(yellow\w*|amarill\w*)",
            r"(yellow\w*) (skin|eyes)", r"jaundic\w*",
            r"(urine|pee) ([\w']+ ){0,4}(dark|brown|tea|cola|coke|like tea|like cola|tea[- ]colou?red|cola[- ]colou?red)",
            r"(dark|brown|tea[- ]colou?red|cola[- ]colou?red) (urine|pee)"],
        "fever": [
            r"(have|got|running|reading|read|hit|reached|up to|at) (a |an )?(100[.,][4-9]\d*|10[1-6]([.,]\d+)?|(3[89]|4[0-2])[.,]\d+)"
            r"( ?(f|c|°[fc]?|degrees))?(?! (minutes|min|mins|dollars|pounds|lbs|people|times|days|hours|years|messages|calls|emails|pages))",
            r"burning up", r"night sweats", r"(shaking|shivering) (chills|uncontrollably)", r"(hot|warm) (and|&) (shiver\w*|shak\w*|chill\w*)",
            r"(3[89]|4[0-2])([.,]\d+)? ?(°|degrees?|deg)? ?c\b", r"(100[.,][4-9]|10[1-6])([.,]\d+)? ?(°|degrees?|deg)? ?f\b",
            r"(100[.,][4-9]|10[1-6])([.,]\d+)? ?(°|degrees|deg)", r"feverish",
            (_FEVER, _HOT), r"(" + _HOT + r")( ?(c|f|degrees?|°c?|°f))? fever", r"(high|very high|spiking|raging|burning) (fever|temp|temperature)",
            (_FEVER, r"chills|rigors|shiver\w*|shaking|sweats|escalofrios"),
            # a fever now, without a number: on immunotherapy any fever gets a call ("a low fever" does not match)
            r"(i'?ve got|i got|i'?m running|running|(has|have) had|has|have|(has|have) got|with) (a )?"
            r"(fever|temperature|temp)"],
        "diarrhoea": [
            (r"bathroom|toilet|loo|restroom|washroom|potty|runs|squirts", r"(" + _MANY + r")\s*\+?\s*(or \d+\s+)?(times|x)\b|\bx\s?(" + _MANY + r")\b|"
             r"every (hour|half hour|30 min\w*)|all (night|day)|nonstop|non-stop"),
            (r"diar\w*|stools?|bowel movements?|bms?|poop\w*|runs", r"(" + _MANY + r")\s*(or \d+\s+)?(times|x|stools|"
             r"bowel movements?|bms?|watery|liquid|loose)\b|\bx\s?(" + _MANY + r")\b"),
            (r"(" + _MANY + r")\s+(or \d+\s+)?(bowel movements?|stools|bms|watery|liquid|loose)", r"today|day|night|since"),
            (r"diar\w*|runs", r"every (hour|half hour|30 min\w*)|all (night|day)|nonstop|non-stop|can'?t leave the "
             r"(bathroom|toilet|house)|stuck (at home|in the bathroom)|won'?t stop|dehydrat\w*"),
            r"(severe|terrible|horrible|awful|really bad|constant|explosive) diar\w*",
            r"(can'?t|cannot|couldn'?t) (get off|leave|get away from|stay off) the (toilet|bathroom|loo)"],
        "abdominal": [
            (r"belly|stomach|abdom\w*|tummy|gut|side", r"pain\w*|pian|hurt\w*|ache\w*|aching|cramp\w*", _INTENSE),
            r"can'?t (straighten|stand) up( straight)?",
            r"(belly|stomach|abdomen|tummy|gut|side) (is |are )?killing me",
            r"(severe|excruciating|unbearable|terrible|worst) (pain|cramps?)"],
        "vomiting": [
            r"(vomit\w*|throw\w* up|threw up|puk\w*) ([\w']+ ){0,3}(all day|all night|everything|nonstop|non-stop|every hour|"
            r"([4-9]|\d\d) times|constantly|won'?t stop)",
            r"can'?t stop (vomiting|throwing up|puking)", r"(keep|kept|still) (vomiting|throwing up|puking)",
            r"(vomit\w*|throwing up|puking) (since|for) (last night|yesterday|this morning|hours|\d+ (hours|days)|two days)", r"can'?t keep (anything|any\w*|water|food|fluids|liquids|it|down) ([\w']+ )?down", r"severe vomiting"],
        "headache_vision": [
            r"(vision|sight|eyesight|eyes?) ([\w']+ ){0,3}(doubled|double|blurr\w*|fuzzy|cloudy|dim|dark|wavy|distorted)",
            r"(vision|sight|eyesight) ([\w']+ ){0,3}(blurr\w*|fuzzy|cloudy|dim|weird|strange|off|dark|going|worse|spots|shadow\w*|wavy|distorted)",
            r"(blurr\w*|fuzzy|cloudy|dim|wavy) (vision|sight)", r"(seeing|see) (spots|flashes|floaters|stars|shadows|halos|zigzag\w*)",
            r"floaters", r"flashing lights", r"(can'?t|cannot|couldn'?t) (see|read) ([\w']+ ){0,3}(properly|clearly|well|right|straight|anything)",
            r"eyes? ([\w']+ ){0,3}(painful|hurts?|hurting|sore|sensitive to light)", r"(light|brightness) ([\w']+ ){0,2}(hurts|bothers) (my )?eyes?",
            r"worst headache", r"thunderclap", r"stiff neck",
            r"(headache|head) ([\w']+ ){0,4}(won'?t go away|for days|(\d|two|three|several) days|every day|all day|nonstop)",
            (r"headache|head ([\w']+ ){0,2}(hurt\w*|pound\w*|ach\w*|throb\w*|splitting|killing)|migraine", _INTENSE),
            r"(head|headache) ([\w']+ ){0,2}(is )?(pounding|splitting|throbbing)",
            r"blurr\w*", r"double vision", r"(seeing|see) double", r"can'?t see (well|anything|out of|clearly|straight|properly)",
            r"vision ([\w']+ ){0,2}(blurry|blurred|spots|loss|gone|dark|changes?|black)", r"(spots|flashes) in my vision",
            r"lost (my |the )?(vision|sight)", r"vision loss", r"eyelids? ([\w']+ ){0,2}droop\w*", r"light hurts my eyes",
            r"eye (is |are )?([\w']+ ){0,2}(painful|red and)"],
        "stroke_weakness": [
            r"(face|mouth|smile) ([\w']+ ){0,3}(droop\w*|crooked|uneven|lopsided)", r"droopy", r"drooping",
            r"(one|left|right) side ([\w']+ ){0,3}(numb\w*|weak\w*|droop\w*|paraly\w*)",
            r"(numb\w*|weak\w*|droop\w*|paraly\w*|tingl\w*) ([\w']+ ){0,4}(one|left|right|half (of )?(my|his|her)) (side|face|arm|leg)",
            r"(left|right|one) (arm|leg|hand|side|foot) ([\w']+ ){0,6}(numb\w*|weak\w*|heavy|paraly\w*|dead)",
            r"(arm|leg|hand|legs|arms) ([\w']+ ){0,3}(went|is|are|feels|felt|got|going|so|too|very) ([\w']+ ){0,2}(numb|weak|heavy|dead)",
            r"suddenly ([\w']+ ){0,2}(weak|numb)", r"(lost|losing|lose|no) (the |all |any )?(strength|feeling|power) in (my|his|her|one|the)( left| right)? (arm|leg|hand|side|foot|face)s?", r"can'?t (hold|grip|lift) (a|my|the|anything)",
            r"(so|very|too|really|extremely|severely) weak", r"weak (that )?i can (barely|hardly|not|'?t)",
            r"(can'?t|cannot|unable to|barely|hardly) (walk|stand up|get up|get out of bed|climb)",
            r"(can'?t|cannot|couldn'?t) get (up|out of bed)", r"severe weakness"],
        "urine": [
            r"(pee\w*|urinat\w*) ([\w']+ ){0,2}(almost nothing|nothing|hardly anything|barely anything|very little|tiny amounts?)",
            r"dehydrat\w*", r"(so|very|really|super|extremely) (dry|thirsty|parched)",
            r"(mouth|lips|tongue) ([\w']+ ){0,2}(so |very |really )?(dry|parched|cracked)", r"(can'?t|cannot) keep (fluids|liquids)",
            r"(haven'?t|hasn'?t|have not|has not|not|barely|hardly|can'?t|cannot|didn'?t|no) ([\w']+ )?(peed|peeing|pee|urinated|"
            r"urinating|urinate)", r"no (urine|pee)", r"(pee\w*|urinat\w*) (very |so )?(little|hardly|barely)", r"(little|hardly any|barely any|very little) (urine|pee)",
            (r"thirst\w*", r"pee\w*|urinat\w*")],
        "heart": [
            r"heart ([\w']+ ){0,3}(racing|pounding|going crazy|flutter\w*|skipping|beating (really |so |very )?(fast|hard)|"
            r"(very|so|really) fast|at 1[2-9]\d)", r"racing heart", r"palpitat\w*", r"(pulse|heart rate|hr) ([\w']+ ){0,2}(1[3-9]\d)"],
        "suicidal": [
            r"(want|going|wanna|gonna) to end (it|things|everything)", r"(don'?t|do not) see (the|any) point( in \w+)? any ?more",
            r"(don'?t|do not) see (the|any) point in (living|going on|anything|being here)",
            r"(can'?t|cannot) (do|take|go on with) (this|it) any ?more", r"can'?t go on", r"want (it|this|everything) (all )?to (stop|end|be over)",
            r"(pills|meds|medication|tablets) ([\w']+ ){0,2}(saved|stockpiled|hoarded|stashed)", r"(saving|saved|stockpil\w*|hoard\w*|stash\w*) (up )?"
            r"(my |some |all |a lot of )?(pills|meds|medication|tablets|sleeping pills)", r"overdos\w*",
            r"(take|swallow|took|taking) (all|the whole bottle|a bunch|all of) (of )?(my |the )?(pills|meds|tablets)",
            r"(no|any) point (in )?(living|going on|anymore|to anything)", r"give up on (life|everything|living)",
            r"(everyone|everybody|they) would be better off", r"(done|finished) with (life|living)",
            r"(wish|wishing) i (could )?(disappear|was gone|wasn'?t here|were gone)",
            r"suicid\w*", r"kill(ing)? myself", r"end(ing)? (it all|my life|my own life)",
            r"thoughts? (of|about) (ending|killing|hurting|harming|taking my|not waking|dying|death|suicide)", r"(don'?t|do not) want to (be alive|live|be here)",
            r"better off (without me|if i (wasn'?t|weren'?t|was not|were not) (here|around|alive))", r"(hurt\w*|harm\w*) myself",
            r"no reason to live", r"(thought|thinking|think) (about|of) (ending (it|my life|things)|not being here|dying)",
            r"(go to sleep|fall asleep) and (not|never) wake up", r"want to die", r"wish i (was|were) dead", r"how i'?d do it"],
        "very_unwell": [
            r"(feel\w*|i'?m|i am) ([\w']+ ){0,2}(like death|like crap|like garbage|like hell|so bad|really bad|very bad|rough|wiped out|drained)",
            r"something (is )?(really |very |seriously )?wrong", r"(never|not ever) felt (this|so) (bad|sick|ill|weak)",
            r"(getting|feeling|feel) (worse|weaker) (and worse|and weaker|every day|by the (day|hour))", r"worst i'?ve (ever )?felt",
            r"(can'?t|cannot) (eat|drink) (anything|at all)", r"(haven'?t|not) (eaten|drunk|drank) ([\w']+ ){0,2}(in|for) (days|\d+ days|two days)",
            r"feel\w* (so |really |very |just )?(terrible|awful|horrible|dreadful|like (i'?m )?dying|worse and worse)",
            r"(feel\w*|i'?m|i am|is) (so|very|really|extremely) (sick|unwell|ill)", r"very (sick|unwell)", r"deathly ill",
            r"(not|isn'?t|not like) (the |my )?(normal|usual) (tired\w*|fatigue|exhaustion)", r"sleep\w* ([\w']+ ){0,2}(1[6-9]|2[0-4]) (hours|hrs|h)\b"],
        "severe_pain": [
            r"(pain|hurt\w*|ache|aching) ([\w']+ ){0,5}(10 ?/ ?10|[89] ?/ ?10|unbearable|excruciating|worst|agony|agoni[sz]ing|"
            r"can'?t (stand|bear|take) it|screaming|crying)",
            r"(unbearable|excruciating|agoni[sz]ing|severe|horrible|terrible|intense|awful|crippling) (\w+ )?(pain|ache|cramps?|hurt\w*)",
            r"in (so much|a lot of|terrible|severe|horrible|agoni[sz]ing|unbearable) pain", r"(pain|hurting|hurts) so (bad|much)",
            r"(crying|screaming) (in|from|with|of) pain", r"pain ([\w']+ ){0,3}(keeps|kept|woke|wakes) (me )?(up|awake)",
            r"(painkillers?|pain meds?|pain medication|tylenol|paracetamol|advil|ibuprofen|morphine|oxy\w*) ([\w']+ ){0,4}(not|don'?t|"
            r"doesn'?t|didn'?t|aren'?t|isn'?t|no longer) (help\w*|work\w*|touch\w*|do\w* anything)"],
        # a symptom that is new or getting worse (the precaution: a nurse reads it)
        "worsening": [(_SYMPTOM, _WORSE), r"new (\w+ ){0,2}(" + _SYMPTOM + r")"],
    },
    "spellings": [
        (r"sob|s\.o\.b", "short of breath"), (r"diff (breathing|breathin)", "difficulty breathing"), (r"rly|rlly|realy|relly", "really"),
        (r"v", "very"), (r"b4", "before"), (r"2day", "today"), (r"2nite|tonite", "tonight"), (r"hrs", "hours"), (r"lil", "little"),
        (r"bc|cuz|coz", "because"), (r"abt", "about"), (r"tmrw|tmr|2moro", "tomorrow"), (r"idk", "i don't know"),
        (r"cnt|cant", "can't"), (r"wont", "won't"), (r"hed", "head"), (r"w/", "with"),
        (r"s(ie|ei|e|i)[sz]ures?", "seizure"), (r"vom+it+(ing)", r"vomit\1"), (r"vom+it+(ed)", r"vomit\1"),
        (r"vom+it+", "vomit"), (r"dia[hr]{1,3}[aeo]{1,3}h?", "diarrhea"), (r"ches+t|chets|chezt", "chest"),
        (r"yel+ow(\w*)", r"yellow\1"), (r"stomac?he?|stomack|stomch", "stomach"), (r"fevr|fver|feever|feaver|fevor", "fever"),
        (r"pass?d out|past out", "passed out"), (r"headach|hedache|headake|hedake", "headache"), (r"fanted", "fainted"),
        (r"brea?th?e?ing|breathin", "breathing"), (r"conf?used|confussed|confued", "confused")],
    # known and unchanged: a cue in the clause cancels a symptom that is not ``lasting``
    "stable": [r"same as (always|before|usual|ever|last (time|visit|week|month)|it'?s been|the last)", r"as usual", r"like always",
               r"as always", r"(nothing|not) new", r"no change", r"unchanged", r"stable", r"steady", r"under control",
               r"(meds?|medicine|medication|cream|pills?|tablets?|it) (is |are )?(help\w*|work\w*|control\w*)", r"normal for me", r"for (many |several |a few |some )?years",
               r"(doctor|dr|nurse|team) (already )?(knows|saw|has seen|checked|looked|said)", r"heal\w* (well|nicely|fine|up)",
               r"(is|are) healing",
               r"already (seen|checked|told|know|knows|aware|discussed)", r"(fine|ok|okay|good) now", r"usual for me"],
    # the precaution: a symptom word in a message that is not about scheduling goes to staff (unless mild)
    "report": [_SYMPTOM, r"sick", r"unwell", r"ill", r"reaction", r"throw\w* up", r"threw up", r"light-?headed", r"palpitat\w*",
               r"shak\w*", r"trembl\w*", r"heartburn", r"reflux"],
    "mild": [r"(3[5-7]|9[5-9])([.,]\d+)?", r"100([.,][0-3]\d*)?", r"mild\w*", r"a (little|bit|tad)", r"slight\w*", r"minor", r"tiny", r"a touch of", r"not (too |that |very )?bad",
             r"manageable", r"little"],
    "scheduling": [r"appointments?", r"appts?", r"book\w*", r"re-?schedul\w*", r"schedul\w*", r"cancel\w*", r"slots?", r"visits?",
                   r"calendar", r"park\w*", r"address", r"directions", r"bring", r"insurance", r"bill\w*", r"refill", r"prescription",
                   r"results?", r"forms?", r"portal", r"monday", r"tuesday", r"wednesday", r"thursday", r"friday", r"saturday",
                   r"sunday", r"tomorrow", r"next week", r"options?", r"(first|second|third|last) one", r"infusion", r"follow[- ]?up",
                   r"what time", r"which time", r"availab\w*", r"later", r"earlier", r"instead",
                   r"(another|different|other) (day|time|date)"],
    # symptom words a misspelling is corrected to (one edit for 5-7 letters, two from 8; same first letter)
    "vocabulary": """breath breathe breathing breathless chest pressure tightness bleeding blood bloody stool stools vomit vomiting
        vomited throwing diarrhea diarrhoea fever fevers chills shivering temperature faint fainted fainting passed dizzy
        dizziness lightheaded seizure seizures convulsion shaking confused confusion disoriented forgetting forgetful memory
        headache migraine vision blurry blurred double swollen swelling blisters blister peeling sores ulcers yellow jaundice
        urine peeing numbness weakness tingling paralysed paralyzed drooping droopy slurred slurring palpitations racing
        pounding heartbeat stomach abdominal abdomen cramps cramping severe terrible horrible unbearable excruciating worse
        shortness dehydrated unresponsive swelling hallucinating
        worst getting suicidal unconscious collapsed wheezing coughing cough choking swallow swallowing sweating sweats
        exhausted exhaustion fatigue really spinning falling hurting painful aching breathing catch""".split(),
    # ordinary words one edit from a symptom word: never corrected
    "common": """so too very bad sick help hurt pain good feel feels still breast breasts bread couch cheese chess chess blond bloom
        flood fevered fewer favor pressed passes paused faith saint point paint dizzy visit visits visiting vision visions
        stool steel steal stole stone store story sweet sweat swear wheel while weeks weaken worst worse sores scores sorry
        seizure sizes seize cramp clamp creamy cream dream hurting hunting hurry hurried bleed breed bleeding breeding
        really realty rally reply doubled doubts double stomach shaking taking making baking faking raking waking
        getting setting letting betting vomit voice passed pasted tasted numbers number numbed weakly weekly weakest
        chests chester chase cheat cough rough tough dough bough urine urge urged purine catch watch match hatch patch
        blurry blurred hurry flurry blurb yellow fellow mellow hello pounding founding bounding rounding sounding
        racing facing pacing lacing spacing tracing ulcers sores spinning pinning winning grinning swallow shallow hollow
        swollen stolen fallen sweats treats swept falling calling failing filling acting confusing confuses dropping
        droppings stores shores peering breadth spanning spelling sharing cooking rating parsed checking collapse
        chilly childs blinding blending breach migrating formatting conversion exhaustive sweaty doubles blessing
        conclusion camping seats selling""".split(),
    "lasting": ["chest", "breathing", "bleeding", "syncope", "seizure", "stroke_weakness", "suicidal", "confusion"],
    "not_symptoms": [r"(tired|sick|exhausted) of", r"lump sum", r"(take|taking|took) a (deep )?breath",
        r"(forgot|forget\w*) (where|how|when|what time|which) ([\w']+ ){0,3}(clinic|office|appointment|appt|parking|building|park|to get|"
        r"to go|visit|address|room|floor|suite|hospital|entrance|lab)", r"(that'?s|what|such|it'?s|is) a (real |total |huge )?pain\b",
        r"blood (tests?|work|draws?|drawn|results?|pressure|sugars?|counts?|bank|donations?|type|thinners?|panel|levels?|"
        r"cells?|labs?)", r"(donate|donating|give|giving) blood", r"bp", r"(dying|die) to (know|see|hear|try|get|find)",
        r"breathtaking", r"(takes?|took|taking) (my|your|his|her|our) breath away", r"hold (your|my) breath", r"(my )?heart (goes|went) out",
        r"heart (sank|sinks|is set|was set)", r"pain in the (neck|butt|backside|ass)", r"off my chest",
        r"(makes?|made|make) my head spin", r"(give|gives|gave|giving) me a headache", r"(traffic|heat|wait\w*|commute|drive|parking|forms?|paperwork|this|that|it|job|work|boss|prices?|bills?|kids?|"
        r"hold music|line) (is|are) killing me",
        r"sick (of|and tired)", r"bloody ([\w']+ )?(website|app|phone|portal|traffic|thing|forms?|system|parking|line|wait)",
        r"feel\w* (so |really |very )?(terrible|awful|bad|horrible) (about|for|that|to)",
        r"couldn'?t breathe (in )?(there|that room|the waiting room|in the waiting room)",
        r"confus\w* (about|by|with|regarding) (the|your|this|which|how|where|when|why|what time|my (appointment|bill|"
        r"insurance|schedule|forms?))", r"(get|wake) up (so |that |this )?early", r"can'?t stand (the|waiting|it|him|her|them)",
        r"pass(ed|ing)? out (the|flyers|forms)", r"faint (hope|idea|chance|line|smell|sound|memory)",
        r"(nearly|almost|gonna|going to|will) (have|had|give me) a heart attack", r"blackout dates", r"ill(?= (let|get|be|call|see|take|check|ask|come|try|do|text|wait|need|have|go|make|think|talk|keep|just|probably|definitely|bring|book|pick|send|tell|ring|reply|confirm|look|find|say|write|contact|figure|sort|double|pass|head|drive|stop|swing|show|walk)\b)", r"(what|which) (are|is|were) (the |some )?([\w']+ ){0,2}side effects?", r"blacked out (dates|days)",
        r"confus\w* (about|by|with|regarding|as to)",
        r"(i'?m|i am) ([\w']+ ){0,2}confused(?=[^.!?]*(appointment|appt|time|slot|date|book\w*|did you|you mean|which|option|"
        r"what you|your (message|text|question)|schedul\w*|reminder|message|text|app|"
        r"portal|form|bill|letter|email|call))", r"got lost ([\w']+ ){0,4}(clinic|hospital|parking|building|office)",
        r"(so |too )?(crowded|packed|full) ([\w']+ ){0,4}(couldn'?t|could not) breathe", r"(couldn'?t|could not) breathe lol"],
    "clause_break": [r"but", r"and", r"y", r"&", r"plus", r"though", r"although", r"however", r"anyway", r"pero", r"aunque",
                     r"also"],
    "negation": [r"no", r"not", r"never", r"without", r"denies", r"denied", r"deny", r"free of", r"nor", r"zero",
                 r"(don'?t|doesn'?t|didn'?t) (have|had|get|got|notice)( any)?", r"(haven'?t|hasn'?t) (had|got|noticed)( any)?",
                 r"(haven'?t|hasn'?t|didn'?t|did not|have not|has not)", r"no more", r"ni", r"sin",
                 r"(don'?t|doesn'?t|do not|does not|dont)\s*$"],
    "hypothetical": [r"^\s*(what|which)( kind of| sort of| type of)?\s*$", r"(watch|look) (out )?for\s*$",r"if (i|you|he|she|they|we) (\w+ )?(get|gets|have|has|develop\w*|start\w*|ever|notice\w*|see|feel)",
                     r"what if", r"what (should|do) (i|we) do (if|when)", r"in case", r"how (many|much)", r"later on",
                     r"in the future"],
    # a question that may be about the patient's own symptom: cancels only a concept that is not lasting
    "asking": [r"is it (normal|ok|okay|bad|common|usual) (to|for|that|if)", r"is (this|that) (normal|common|usual)"],
    # a symptom asked and answered no ("fever? nope.")
    "denial": [r"no", r"nope", r"nah", r"none", r"negative", r"not really", r"neither", r"nothing", r"tampoco", r"nada"],
    # "since last month" is still going on
    "past": [r"(?<!since )((\d+|a|two|three|few|several|many|couple of) )?(years?|months?) ago", r"when i was (a|little|young)", r"(?<!since )last (month|year)",
             r"from (last|the other) (month|year)", r"years back", r"as a (kid|child|teen\w*)"],
    "resolved": [r"(much|a lot|way|lots|so much|a little|a bit) better", r"(?<!not )(?<!n't )improv(ed|ing)",r"(is|are|was|were|it'?s|all) gone", r"gone now", r"went away", r"cleared( up)?", r"resolved",
                 r"(?<!not )better now", r"(is|are) better", r"all better", r"(has|have) stopped", r"stopped now", r"healed",
                 r"no longer", r"(?<!not )(?<!n't )(?<!never )(got|gotten|getting) better"],
}
