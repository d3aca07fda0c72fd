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

// test: ooxml_vba_project matches "PK\x03\x04\x14\x00\x00\x00\x00\x00word/vbaProject.bin"
// test: ooxml_vba_project ignores "PK\x03\x04\x14\x00\x00\x00\x00\x00word/document.xml"
// test: ole_vba_project matches "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1_\x00V\x00B\x00A\x00_\x00P\x00R\x00O\x00J\x00E\x00C\x00T\x00"
