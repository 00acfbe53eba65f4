"""Cross-region spot checks (交叉质控): configuration, stratified draw, blinding and pseudonyms,
grading (app and spreadsheet), agreement figures. See the README section "Spot checks"."""
