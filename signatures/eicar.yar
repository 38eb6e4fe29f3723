// EICAR anti-virus test file as a YARA rule (streamed: plain strings only).
rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-virus test file"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar
}
