"""Clinical vocabulary that identifies nobody: procedures, series, reasons, characteristics.

Kept apart from the identity lists so that the distinctiveness test has a clear
counterpart: nothing planted may occur, case-insensitively, in these words.
"""

#: Requested procedures by the lead image kind of a study (upper case, as RIS write them).
PROCEDURES = {
    "CR": ["CHEST PA", "CHEST AP PORTABLE", "KNEE AP AND LATERAL", "HAND 3 VIEWS"],
    "DX": ["CHEST PA AND LATERAL", "ABDOMEN SUPINE", "PELVIS AP", "SHOULDER 2 VIEWS"],
    "CT": ["CT CHEST W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST", "CT HEAD ROUTINE"],
    "MR": ["MR BRAIN W/WO CONTRAST", "MR LUMBAR SPINE", "MR KNEE RIGHT"],
    "US": ["US ABDOMEN COMPLETE", "US THYROID", "ECHO TTE COMPLETE"],
    "XA": ["CORONARY ANGIOGRAPHY", "CEREBRAL ANGIOGRAM"],
}
#: Series descriptions by image kind.
SERIES = {
    "CR": ["PA", "LAT", "AP"],
    "DX": ["PA", "LAT", "AP"],
    "CT": ["AXIAL 5.0 B30F", "AXIAL 1.25 LUNG", "CORONAL MPR"],
    "MR": ["AX T2 FLAIR", "SAG T1 TSE", "AX DWI B1000", "COR T2 STIR"],
    "US": ["ABDOMEN", "THYROID", "CARDIAC"],
    "US_MF": ["CINE LOOP", "CINE 4CH"],
    "XA": ["LAO 30 CRA 20", "RAO 25 CAU 15", "AP CRA 30"],
}
#: Reasons for the request, used in patient history text.
REASONS = [
    "persistent cough",
    "follow-up of nodule",
    "abdominal pain",
    "trauma",
    "headache",
    "chest pain on exertion",
    "staging",
]
#: Ethnic Group values by script.
ETHNIC = {
    "zh": ["Han Chinese", "Hui Chinese"],
    "ja": ["Yamato Japanese"],
    "ko": ["Korean Hanminjok"],
    "latin": ["Iberian", "Central European"],
    "ascii": ["Hispanic Latino", "African American", "Pacific Islander"],
}
#: Occupation values by script.
OCCUPATION = {
    "zh": ["中学教师", "出租车司机", "退休工人"],
    "ja": ["会社員", "看護師"],
    "ko": ["회사원", "초등교사"],
    "latin": ["Bäckermeister", "Ingeniera civil"],
    "ascii": ["Schoolteacher", "Electrician", "Accountant"],
}
