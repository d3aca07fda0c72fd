// Script content inside documents: HTML/SVG script elements, encoded PowerShell command
// lines, and the auto-executing macro names of VBA projects.

rule html_script_element : script
{
    meta:
        description = "HTML or SVG <script> element"
    strings:
        $s = /<script[\s>\/]/ nocase
    condition:
        $s
}

rule powershell_encoded_command : script
{
    meta:
        description = "PowerShell started with an encoded command (-enc / -EncodedCommand)"
    strings:
        $ps = /powershell(\.exe)?["']?[^\r\n]{0,200}\s[-\/]e(nc(odedcommand)?|c)?\s+[A-Za-z0-9+\/=]{20}/ nocase ascii wide
    condition:
        $ps
}

rule vba_auto_exec : script macro
{
    meta:
        description = "VBA project (OLE compound file) with an auto-executing macro"
    strings:
        $a1 = "AutoOpen" nocase ascii wide
        $a2 = "Auto_Open" nocase ascii wide
        $a3 = "AutoExec" nocase ascii wide
        $a4 = "AutoClose" nocase ascii wide
        $a5 = "Document_Open" nocase ascii wide
        $a6 = "Document_Close" nocase ascii wide
        $a7 = "Workbook_Open" nocase ascii wide
        $a8 = "Workbook_Activate" nocase ascii wide
        $vba = "_VBA_PROJECT" ascii wide
    condition:
        uint32(0) == 0xE011CFD0 and $vba and any of ($a*)
}

// test: html_script_element matches "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"
// test: html_script_element ignores "<p>the <scripture> reading</p>"
// test: powershell_encoded_command matches "powershell.exe -NoP -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA"
// test: powershell_encoded_command ignores "powershell.exe -File backup.ps1"
