// Office documents that carry VBA macros.

rule ooxml_vba_project : macro
{
    meta:
        description = "OOXML document (zip) with a VBA project (vbaProject.bin)"
    strings:
        $vba = "vbaProject.bin" nocase
    condition:
        uint32(0) == 0x04034B50 and $vba
}

rule ole_vba_project : macro
{
    meta:
        description = "OLE compound file (legacy Office) with a VBA project stream"
    strings:
        $vba = "_VBA_PROJECT" ascii wide
    condition:
        uint32(0) == 0xE011CFD0 and $vba
}
