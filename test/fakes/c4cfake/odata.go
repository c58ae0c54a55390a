package c4cfake

import "net/http"

// odata is the OData v2 part of the fake (filled in with the attachments
// processor).
type odata struct {
	s                    *Server
	service              string
	attachmentCollection string
}

func newOData(s *Server) *odata {
	return &odata{s: s, service: "/sap/c4c/odata/v1/c4codataapi/", attachmentCollection: "AttachmentFolderCollection"}
}

func (o *odata) serve(w http.ResponseWriter, r *http.Request, rest string) {
	restError(w, http.StatusNotImplemented, "NOT_IMPLEMENTED", "OData is not faked yet")
}
