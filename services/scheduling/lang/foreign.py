"""Common words of languages no tenant has declared yet (French, Portuguese, Italian, German,
Vietnamese): a message that reads as one of them goes to staff instead of being parsed.

``STRONG``: words no English or Spanish message uses (Portuguese "sim", "não", "você", French
"oui", German "ja"): each counts as three marker words, so "claro que sim" or a lone "oui" reads
as another language. ``YES``: yes words of those languages; a message holding one is never taken as
a yes, whatever language it was read as. ``LETTERS``: letters Spanish and English do not write
("ã", "õ", "ç", "ß", "œ"...), each one a strong marker of another language."""
from __future__ import annotations

MARKERS: dict[str, frozenset[str]] = {
    "fr": frozenset("oui non merci je vous nous est suis avec pour rendez rendez-vous voudrais pouvez bonjour "
                    "demain semaine matin apres-midi d'accord peut-etre douleur poitrine aujourd'hui c'est parfait "
                    "beaucoup merci ca".split()),
    "pt": frozenset("sim nao obrigado obrigada voce consulta amanha semana manha quero posso marcar desmarcar "
                    "tenho dor peito estou agora entao muito eu minha meu verdade pode horario desculpa ajuda ela "
                    "esta aqui ingles primeiro bom boa sou disse vizinha tudo isso essa esse tambem fazer obrigado "
                    "voces ele vou vai dela pra beleza certo combinado".split()),
    "it": frozenset("grazie buongiorno appuntamento domani settimana mattina pomeriggio vorrei posso sono "
                    "ho dolore petto va bene allora".split()),
    "de": frozenset("ja nein danke bitte ich sie wir termin morgen woche nachmittag moechte kann habe "
                    "schmerzen brust und nicht ist der die das erste passt mir gut".split()),
    "vi": frozenset("toi muon huy lich hen co khong cam on ban duoc di đi hom nay ngay mai".split()),
}
#: Words of another language that English and Spanish messages do not use: each weighs three.
STRONG = frozenset("sim nao voce obrigado obrigada beleza combinado oui merci bonjour d'accord ja nein danke bitte "
                   "grazie buongiorno vorrei sou vizinha tudo isso".split())
STRONG_WEIGHT = 3
#: Yes in another language: never a yes to a proposal (the message goes to staff).
YES = frozenset("sim oui ja jawohl ouais combinado beleza".split())
#: Letters of other Latin-script languages (checked on the text before accents are folded).
LETTERS = frozenset("ãõçßœàèùâêîôûëïÿ")
